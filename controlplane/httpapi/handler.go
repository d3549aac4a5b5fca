package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"

	"github.com/talos-project/talos/controlplane/grpcapi"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// Mode selects the surfaces a process serves.
type Mode int

const (
	ModeAll    Mode = iota // everything (talos serve)
	ModeAdmin              // admin API + JWKS (talos serve admin)
	ModePublic             // self-revoke + JWKS (talos serve public)
)

// Options are the HTTP settings from configuration.
type Options struct {
	Mode           Mode
	MaxBodyBytes   int64
	ClientIPSource ClientIPSource
	// ExcludeHealthFromLog keeps health probes out of the request log.
	ExcludeHealthFromLog bool
	// Auth decides who may call which method: the same rule, keyed by the
	// same RPC full method names, as on the gRPC listener. Nil configures
	// nothing: everything is open.
	Auth *grpcapi.Auth
	// AllowedHosts (serve.http.allowed_hosts) are the Host names, besides
	// loopback ones and a specific BindHost, that the admin surface answers
	// while it is open (Auth.AdminEnforced is false).
	AllowedHosts []string
	// BindHost is serve.http.host.
	BindHost string
}

// Deps are the collaborators of the handler.
type Deps struct {
	API    *grpcapi.Server
	Logger *slog.Logger
	// Ready reports whether the process can serve (the database answers).
	Ready func(ctx context.Context) error
}

// created lists the methods Ory Talos answers with 201 or 204 instead of 200.
var successStatus = map[string]int{
	"/talos.v2alpha1.ApiKeys/AdminIssueApiKey":          http.StatusCreated,
	"/talos.v2alpha1.ApiKeys/AdminImportApiKey":         http.StatusCreated,
	"/talos.v2alpha1.ApiKeys/AdminRotateIssuedApiKey":   http.StatusCreated,
	"/talos.v2alpha1.ApiKeys/AdminRevokeIssuedApiKey":   http.StatusNoContent,
	"/talos.v2alpha1.ApiKeys/AdminRevokeImportedApiKey": http.StatusNoContent,
	"/talos.v2alpha1.ApiKeys/AdminDeleteImportedApiKey": http.StatusNoContent,
}

// jwksCacheControl lets JWKS consumers cache the key set for five minutes, in
// the 5–15 minute range Ory Talos recommends; a rotated-in key is published
// before it signs, so a cached set never misses a current key for long.
const jwksCacheControl = "public, max-age=300"

// New returns the HTTP handler of the API port.
func New(ctx context.Context, opts Options, deps Deps) (http.Handler, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newMarshaler()),
		runtime.WithErrorHandler(gatewayError),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithForwardResponseOption(func(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
			if m, ok := runtime.RPCMethod(ctx); ok {
				if m == "/talos.v2alpha1.DerivedKeys/GetJwks" {
					w.Header().Set("Cache-Control", jwksCacheControl)
				}
				if code, ok := successStatus[m]; ok {
					w.WriteHeader(code)
				}
			}
			return nil
		}),
		// Only our own headers reach the services; nothing from the client
		// is forwarded as gRPC metadata (but Authorization and
		// X-Forwarded-For/Host, which the gateway always passes on; the
		// auth rule reads none of it, see callerOf).
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		// Of the services' response headers only the rate-limit ones
		// (RateLimit-Policy, RateLimit, Retry-After) reach the client,
		// under their own names.
		runtime.WithOutgoingHeaderMatcher(grpcapi.RateLimitHeader),
		// No form-encoded POST is turned into a GET or another method
		// (requireJSON refuses such bodies first anyway).
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		// The log shows the route pattern, never the raw path.
		runtime.WithMiddlewares(gatewayRoute),
	)
	// The gateway calls the services through the same kind of interceptor as
	// the gRPC listener, by RPC full method name.
	conn := newInProcess(authorize(opts.Auth, newHostPolicy(opts.AllowedHosts, opts.BindHost)))
	if opts.Mode == ModeAll || opts.Mode == ModeAdmin {
		conn.register(&pb.ApiKeys_ServiceDesc, deps.API)
		if err := pb.RegisterApiKeysHandlerClient(ctx, gw, pb.NewApiKeysClient(conn)); err != nil {
			return nil, fmt.Errorf("register admin API: %w", err)
		}
	}
	if opts.Mode == ModeAll || opts.Mode == ModePublic {
		conn.register(&pb.SelfService_ServiceDesc, deps.API)
		if err := pb.RegisterSelfServiceHandlerClient(ctx, gw, pb.NewSelfServiceClient(conn)); err != nil {
			return nil, fmt.Errorf("register self-service API: %w", err)
		}
	}
	conn.register(&pb.DerivedKeys_ServiceDesc, deps.API)
	if err := pb.RegisterDerivedKeysHandlerClient(ctx, gw, pb.NewDerivedKeysClient(conn)); err != nil {
		return nil, fmt.Errorf("register JWKS: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("/", gw)
	Health(mux, deps.Ready)
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		resp, err := deps.API.GetJwks(r.Context(), &pb.GetJwksRequest{})
		if err != nil {
			gatewayError(r.Context(), nil, nil, w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", jwksCacheControl)
		b, _ := newMarshaler().Marshal(resp.GetJwks())
		_, _ = w.Write(b)
	})

	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect && !isCleanPath(r.URL.EscapedPath()) {
			// ServeMux would redirect to the cleaned path, repeating it and
			// the query (a credential pasted into the URL) in Location and
			// the body. No client of this API sends such a path.
			routingError(r.Context(), nil, nil, w, r, http.StatusNotFound)
			return
		}
		mux.ServeHTTP(w, r)
		// ServeMux sets the pattern it matched on r; "/" is the gateway,
		// which records its own route.
		if r.Pattern != "" && r.Pattern != "/" {
			setRoute(r.Context(), r.Pattern)
		}
	})
	h = clientIPMiddleware(opts.ClientIPSource, h)
	h = requireJSON(h)
	h = bodyLimit(opts.MaxBodyBytes, h)
	h = securityHeaders(h)
	h = requestLog(log, opts.ExcludeHealthFromLog, h)
	h = requestID(h)
	h = recoverPanics(log, h)
	h = withRequestInfo(h)
	return h, nil
}

// isCleanPath reports whether ServeMux serves p as it is, without
// redirecting to a cleaned form: p is absolute and has no empty, "." or ".."
// segment (a trailing slash is kept). It mirrors net/http's cleanPath.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c == p
}

// ErrShuttingDown is what a ready func returns once shutdown has begun:
// /health/ready answers 503 with the reason "shutting down".
var ErrShuttingDown = errors.New("shutting down")

// Health registers /health/alive and /health/ready on mux. ready may be nil;
// an error from it is a 503 (the database, or ErrShuttingDown).
func Health(mux *http.ServeMux, ready func(ctx context.Context) error) {
	mux.HandleFunc("GET /health/alive", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); errors.Is(err, ErrShuttingDown) {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "errors": map[string]string{"server": "shutting down"}})
				return
			} else if err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "errors": map[string]string{"database": "not reachable"}})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
