package main

import (
	"slices"
	"testing"
)

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
		{"defaults, no tokens", controlPlaneListeners("0.0.0.0:4420", "0.0.0.0:4421", "0.0.0.0:4422", true, false, false),
			[]string{"HTTP", "gRPC", "metrics"}},
		{"admin tokens: only metrics is unprotected", controlPlaneListeners("0.0.0.0:4420", "0.0.0.0:4421", "0.0.0.0:4422", true, true, true),
			[]string{"metrics"}},
		{"sidecar tokens only: the admin API is still open", controlPlaneListeners("0.0.0.0:4420", "0.0.0.0:4421", "127.0.0.1:4422", true, false, true),
			[]string{"HTTP", "gRPC"}},
		{"serve public: nothing needs a token", controlPlaneListeners("0.0.0.0:4420", "0.0.0.0:4421", "127.0.0.1:4422", false, false, false),
			nil},
		{"loopback everywhere", controlPlaneListeners("127.0.0.1:4420", "[::1]:4421", "localhost:4422", true, false, false), nil},
		{"proxy defaults", proxyListeners("127.0.0.1:9191", "127.0.0.1:4430", "127.0.0.1:4432"), nil},
		{"proxy on all interfaces", proxyListeners("0.0.0.0:9191", "127.0.0.1:4430", "[::]:4432"),
			[]string{"proxy ext_authz", "proxy metrics"}},
	}
	for _, tc := range cases {
		if got := names(exposedListeners(tc.ls)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: exposed = %v, want %v", tc.name, got, tc.want)
		}
	}
	// What the gRPC listener lacks is named.
	ls := exposedListeners(controlPlaneListeners("0.0.0.0:1", "0.0.0.0:2", "127.0.0.1:3", true, false, false))
	if len(ls) != 2 || !slices.Contains(ls[1].unprotected, unprotectedSidecar) || !slices.Contains(ls[1].unprotected, unprotectedAdmin) {
		t.Errorf("gRPC listener without tokens: %+v", ls)
	}
}
