package main

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/talos-project/talos/pkg/config"
)

// exposedListener is one listener as the startup warning sees it: where it
// listens and what it serves without a credential that would protect it.
type exposedListener struct {
	name string // "HTTP", "gRPC", "metrics", "ext_authz", ...
	addr string // host:port as configured
	// certified is true when the listener's TLS requires a client
	// certificate from its CA: then no caller without one gets a
	// connection, whatever the listener serves.
	certified bool
	// unprotected lists what this listener serves to any caller that could
	// do harm in the wrong hands: an admin API without tokens, the sidecar
	// protocol without tokens, a verdict oracle, metrics.
	unprotected []string
}

// exposedListeners returns the listeners that are reachable from other hosts
// (not bound to a loopback address) and serve something unprotected, in
// order. A host name other than localhost counts as reachable: it may resolve
// to any address.
func exposedListeners(ls []exposedListener) []exposedListener {
	var out []exposedListener
	for _, l := range ls {
		if len(l.unprotected) > 0 && !l.certified && !loopbackAddr(l.addr) {
			out = append(out, l)
		}
	}
	return out
}

// loopbackAddr reports whether host:port (or a bare host) binds loopback
// only: localhost, 127.0.0.0/8, ::1.
func loopbackAddr(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// warnExposed logs one warning per exposed listener.
func warnExposed(log *slog.Logger, ls []exposedListener) {
	for _, l := range exposedListeners(ls) {
		log.Warn("listener reachable from other hosts serves without authentication and without TLS",
			slog.String("listener", l.name), slog.String("addr", l.addr),
			slog.String("unprotected", strings.Join(l.unprotected, ", ")),
			slog.String("advice", "bind it to 127.0.0.1, require client certificates (tls.client_auth: require), or keep it on a private network and configure tokens where they exist"))
	}
}

// Unprotected surfaces, as named in the warning.
const (
	unprotectedAdmin    = "admin API (serve.admin.auth.bearer_tokens unset)"
	unprotectedSidecar  = "sidecar protocol: Verifier and xDS (no admin or sidecar tokens)"
	unprotectedMetrics  = "metrics and health"
	unprotectedExtAuthz = "ext_authz Check (answers verdicts to any caller)"
	unprotectedProxy    = "HTTP authorization and verify proxy (answers verdicts to any caller)"
)

// certifies reports whether a listener's TLS admits only callers with a
// client certificate from its CA.
func certifies(t config.TLS) bool { return t.Enabled && t.ClientAuth == config.ClientAuthRequire }

// controlPlaneListeners describes the listeners of talos serve: adminAuth
// says whether the admin surface demands a credential, sidecarAuth whether
// the sidecar protocol does.
func controlPlaneListeners(s config.Serve, adminSurface, adminAuth, sidecarAuth bool) []exposedListener {
	var httpU, grpcU []string
	if adminSurface && !adminAuth {
		httpU = append(httpU, unprotectedAdmin)
		grpcU = append(grpcU, unprotectedAdmin)
	}
	if adminSurface && !sidecarAuth {
		grpcU = append(grpcU, unprotectedSidecar)
	}
	return []exposedListener{
		{name: "HTTP", addr: s.HTTP.Addr(), certified: certifies(s.HTTP.TLS), unprotected: httpU},
		{name: "gRPC", addr: s.GRPC.Addr(), certified: certifies(s.GRPC.TLS), unprotected: grpcU},
		{name: "metrics", addr: s.Metrics.Addr(), certified: certifies(s.Metrics.TLS), unprotected: []string{unprotectedMetrics}},
	}
}

// proxyListeners describes the listeners of talos proxy, none of which takes
// a credential from its caller (a client certificate aside).
func proxyListeners(p config.Proxy) []exposedListener {
	return []exposedListener{
		{name: "proxy ext_authz", addr: p.ExtAuthz.Addr(), certified: certifies(p.ExtAuthz.TLS), unprotected: []string{unprotectedExtAuthz}},
		{name: "proxy HTTP", addr: p.HTTP.Addr(), certified: certifies(p.HTTP.TLS), unprotected: []string{unprotectedProxy}},
		{name: "proxy metrics", addr: p.Metrics.Addr(), certified: certifies(p.Metrics.TLS), unprotected: []string{unprotectedMetrics}},
	}
}
