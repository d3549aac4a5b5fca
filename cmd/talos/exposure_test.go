package main

import (
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/talos-project/talos/pkg/config"
)

// serveAt returns the serve section with the listeners at these addresses.
func serveAt(t *testing.T, httpAddr, grpcAddr, metricsAddr string) config.Serve {
	t.Helper()
	s := config.Defaults().Serve
	for _, l := range []struct {
		addr string
		host *string
		port *int
	}{{httpAddr, &s.HTTP.Host, &s.HTTP.Port}, {grpcAddr, &s.GRPC.Host, &s.GRPC.Port}, {metricsAddr, &s.Metrics.Host, &s.Metrics.Port}} {
		h, p, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Fatal(err)
		}
		*l.host = h
		if *l.port, err = strconv.Atoi(p); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// proxyAt returns the proxy section with the listeners at these addresses.
func proxyAt(t *testing.T, extAuthzAddr, httpAddr, metricsAddr string) config.Proxy {
	t.Helper()
	s := serveAt(t, extAuthzAddr, httpAddr, metricsAddr)
	p := config.Defaults().Proxy
	p.ExtAuthz.Host, p.ExtAuthz.Port = s.HTTP.Host, s.HTTP.Port
	p.HTTP.Host, p.HTTP.Port = s.GRPC.Host, s.GRPC.Port
	p.Metrics.Host, p.Metrics.Port = s.Metrics.Host, s.Metrics.Port
	return p
}

func TestExposedListeners(t *testing.T) {
	t.Parallel()
	for addr, loop := range map[string]bool{
		"127.0.0.1:4420": true, "127.1.2.3:1": true, "[::1]:4420": true, "localhost:9191": true, "LOCALHOST:1": true,
		"[::ffff:127.0.0.1]:1": true, "127.0.0.1": true,
		"0.0.0.0:4420": false, "[::]:4420": false, ":4420": false, "10.0.0.1:4420": false, "talos.internal:4420": false,
		"localhost.example:1": false, "[2001:db8::1]:1": false,
	} {
		if got := loopbackAddr(addr); got != loop {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, loop)
		}
	}
	names := func(ls []exposedListener) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.name)
		}
		return out
	}
	cases := []struct {
		name string
		ls   []exposedListener
		want []string
	}{
		{"defaults, no tokens", controlPlaneListeners(serveAt(t, "0.0.0.0:4420", "0.0.0.0:4421", "0.0.0.0:4422"), true, false, false),
			[]string{"HTTP", "gRPC", "metrics"}},
		{"admin tokens: only metrics is unprotected", controlPlaneListeners(serveAt(t, "0.0.0.0:4420", "0.0.0.0:4421", "0.0.0.0:4422"), true, true, true),
			[]string{"metrics"}},
		{"sidecar tokens only: the admin API is still open", controlPlaneListeners(serveAt(t, "0.0.0.0:4420", "0.0.0.0:4421", "127.0.0.1:4422"), true, false, true),
			[]string{"HTTP", "gRPC"}},
		{"serve public: nothing needs a token", controlPlaneListeners(serveAt(t, "0.0.0.0:4420", "0.0.0.0:4421", "127.0.0.1:4422"), false, false, false),
			nil},
		{"loopback everywhere", controlPlaneListeners(serveAt(t, "127.0.0.1:4420", "[::1]:4421", "localhost:4422"), true, false, false), nil},
		{"proxy defaults", proxyListeners(proxyAt(t, "127.0.0.1:9191", "127.0.0.1:4430", "127.0.0.1:4432")), nil},
		{"proxy on all interfaces", proxyListeners(proxyAt(t, "0.0.0.0:9191", "127.0.0.1:4430", "[::]:4432")),
			[]string{"proxy ext_authz", "proxy metrics"}},
	}
	for _, tc := range cases {
		if got := names(exposedListeners(tc.ls)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: exposed = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A listener that requires client certificates admits no one without
	// one; server TLS alone changes nothing.
	mtls := serveAt(t, "0.0.0.0:4420", "0.0.0.0:4421", "0.0.0.0:4422")
	mtls.GRPC.TLS = config.TLS{Enabled: true, ClientAuth: config.ClientAuthRequire}
	mtls.HTTP.TLS = config.TLS{Enabled: true, ClientAuth: config.ClientAuthRequest}
	if got := names(exposedListeners(controlPlaneListeners(mtls, true, false, false))); !slices.Equal(got, []string{"HTTP", "metrics"}) {
		t.Errorf("gRPC with client_auth require: exposed = %v, want [HTTP metrics]", got)
	}
	px := proxyAt(t, "0.0.0.0:9191", "0.0.0.0:4430", "127.0.0.1:4432")
	px.ExtAuthz.TLS = config.TLS{Enabled: true, ClientAuth: config.ClientAuthRequire}
	px.HTTP.TLS = config.TLS{Enabled: true}
	if got := names(exposedListeners(proxyListeners(px))); !slices.Equal(got, []string{"proxy HTTP"}) {
		t.Errorf("ext_authz with client_auth require: exposed = %v, want [proxy HTTP]", got)
	}
	// What the gRPC listener lacks is named.
	ls := exposedListeners(controlPlaneListeners(serveAt(t, "0.0.0.0:1", "0.0.0.0:2", "127.0.0.1:3"), true, false, false))
	if len(ls) != 2 || !slices.Contains(ls[1].unprotected, unprotectedSidecar) || !slices.Contains(ls[1].unprotected, unprotectedAdmin) {
		t.Errorf("gRPC listener without tokens: %+v", ls)
	}
}
