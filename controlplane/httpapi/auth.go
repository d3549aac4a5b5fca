package httpapi

import (
	"context"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/pkg/credential"
)

// requestInfo travels in the request context from the outermost middleware
// down to the gateway and back: the route the request resolved to (for the
// log, which never carries the raw path), its Host (for hostPolicy) and what
// it presents to the auth rule.
type requestInfo struct {
	route string
	host  string
	// caller is taken from the *http.Request itself (its connection and
	// headers), never from the gRPC metadata the gateway builds: no header
	// a client sends can become another part of the caller than its own.
	caller grpcapi.Caller
	// pattern is the gateway route matched, when the request never got to
	// a service call (which records its template in route); rendered only
	// for the log.
	pattern    runtime.Pattern
	hasPattern bool
}

type requestInfoKey struct{}

func withRequestInfo(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &requestInfo{host: r.Host, caller: callerOf(r)}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
	})
}

// callerOf is what r presents to the auth rule: its first Authorization
// value, the TLS state of its connection, the address of the direct TCP peer
// (never a forwarded one: the peer decides whether x-forwarded-client-cert
// is trusted) and its x-forwarded-client-cert values.
func callerOf(r *http.Request) grpcapi.Caller {
	return grpcapi.Caller{
		Authorization: r.Header.Get("Authorization"),
		TLS:           r.TLS,
		Peer:          credential.ParseAddr(r.RemoteAddr),
		XFCC:          r.Header.Values(grpcapi.XFCCHeader),
	}
}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// setRoute records the route pattern of a matched request, once.
func setRoute(ctx context.Context, route string) {
	if info := infoFrom(ctx); info != nil && info.route == "" {
		info.route = route
	}
}

// routeOf is what the log shows of a request's path: its route pattern, or
// "unmatched". The raw path may carry a credential pasted in the wrong place.
func routeOf(ctx context.Context) string {
	info := infoFrom(ctx)
	switch {
	case info == nil:
	case info.route != "":
		return info.route
	case info.hasPattern:
		return info.pattern.String()
	}
	return "unmatched"
}

// gatewayRoute is the gateway middleware that remembers the route matched.
func gatewayRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if info := infoFrom(r.Context()); info != nil {
			info.pattern, info.hasPattern = runtime.HTTPPattern(r.Context())
		}
		next(w, r, params)
	}
}

// errMisdirected refuses an admin call whose Host is not one of ours while
// the admin API is open (a DNS-rebinding page): 421.
var errMisdirected = errors.New("host not allowed")

// hostPolicy is the set of Host names the admin surface answers while it is
// open (no credential reaching it is configured): loopback names and addresses, the bound host
// when it is specific, and serve.http.allowed_hosts. Ports are ignored.
type hostPolicy struct {
	names map[string]bool
}

func newHostPolicy(allowed []string, bindHost string) hostPolicy {
	p := hostPolicy{names: map[string]bool{"localhost": true}}
	add := func(h string) {
		n := normalizeHost(h)
		if a, err := netip.ParseAddr(n); err == nil {
			if a.IsUnspecified() {
				return
			}
			n = a.Unmap().String()
		}
		if n != "" {
			p.names[n] = true
		}
	}
	for _, h := range allowed {
		add(h)
	}
	add(bindHost) // unless unspecified (0.0.0.0, ::)
	return p
}

// normalizeHost lowercases a Host value and strips its port, the brackets of
// an IPv6 literal and a trailing dot. "" when nothing is left.
func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(h, ".")
}

func (p hostPolicy) allows(host string) bool {
	n := normalizeHost(host)
	if n == "" {
		return false
	}
	if a, err := netip.ParseAddr(n); err == nil {
		if a.Unmap().IsLoopback() {
			return true
		}
		n = a.Unmap().String()
	}
	return p.names[n]
}

// authorize returns the interceptor every gateway call runs through: the one
// auth rule (grpcapi.Auth, keyed by the RPC full method name the route
// resolved to, given the caller the outermost middleware took from the
// request), then, while the admin API is open, the Host check of the admin
// surface. It never reads the call's metadata.
func authorize(auth *grpcapi.Auth, hosts hostPolicy) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if tmpl, ok := runtime.HTTPPathPattern(ctx); ok {
			setRoute(ctx, tmpl)
		}
		ri := infoFrom(ctx)
		var caller grpcapi.Caller // none: a call that did not come through the handler proves nothing
		if ri != nil {
			caller = ri.caller
		}
		if err := auth.Check(info.FullMethod, caller); err != nil {
			return nil, err
		}
		if grpcapi.SurfaceOf(info.FullMethod) == grpcapi.SurfaceAdmin && !auth.AdminEnforced() {
			if ri == nil || !hosts.allows(ri.host) {
				return nil, errMisdirected
			}
		}
		return handler(ctx, req)
	}
}

// requireJSON answers 415 to a request that carries a body, or whose method
// normally does (POST, PUT, PATCH), unless its Content-Type is
// application/json (parameters allowed; a charset must be UTF-8). Browsers
// send text/plain and form bodies cross-site without a preflight; JSON they
// do not. application/*+json is refused too: the API speaks plain JSON only.
// It runs after bodyLimit, which sets ContentLength to the body read.
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.ContentLength != 0, r.Method == http.MethodPost, r.Method == http.MethodPut, r.Method == http.MethodPatch:
			if !isJSON(r.Header.Get("Content-Type")) {
				writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "UNSUPPORTED_MEDIA_TYPE",
					"Content-Type must be application/json", nil)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}
