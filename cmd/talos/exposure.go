package main

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
)

// exposedListener is one listener as the startup warning sees it: where it
// listens and what it serves without a credential that would protect it.
// (The TLS issue adds whether the listener terminates TLS.)
type exposedListener struct {
	name string // "HTTP", "gRPC", "metrics", "ext_authz", ...
	addr string // host:port as configured
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
		if len(l.unprotected) > 0 && !loopbackAddr(l.addr) {
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
			slog.String("advice", "bind it to 127.0.0.1, or keep it on a private network and configure tokens where they exist"))
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

// controlPlaneListeners describes the listeners of talos serve.
func controlPlaneListeners(httpAddr, grpcAddr, metricsAddr string, adminSurface, adminTokens, anyTokens bool) []exposedListener {
	var httpU, grpcU []string
	if adminSurface && !adminTokens {
		httpU = append(httpU, unprotectedAdmin)
		grpcU = append(grpcU, unprotectedAdmin)
	}
	if adminSurface && !anyTokens {
		grpcU = append(grpcU, unprotectedSidecar)
	}
	return []exposedListener{
		{name: "HTTP", addr: httpAddr, unprotected: httpU},
		{name: "gRPC", addr: grpcAddr, unprotected: grpcU},
		{name: "metrics", addr: metricsAddr, unprotected: []string{unprotectedMetrics}},
	}
}

// proxyListeners describes the listeners of talos proxy, none of which takes
// a credential from its caller.
func proxyListeners(extAuthzAddr, httpAddr, metricsAddr string) []exposedListener {
	return []exposedListener{
		{name: "proxy ext_authz", addr: extAuthzAddr, unprotected: []string{unprotectedExtAuthz}},
		{name: "proxy HTTP", addr: httpAddr, unprotected: []string{unprotectedProxy}},
		{name: "proxy metrics", addr: metricsAddr, unprotected: []string{unprotectedMetrics}},
	}
}
