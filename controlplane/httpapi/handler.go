package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
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
	// AdminTokens protect the admin surface; none means unauthenticated.
	AdminTokens AdminTokens
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
		// is forwarded as gRPC metadata.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
	)
	if opts.Mode == ModeAll || opts.Mode == ModeAdmin {
		if err := pb.RegisterApiKeysHandlerServer(ctx, gw, deps.API); err != nil {
			return nil, fmt.Errorf("register admin API: %w", err)
		}
	}
	if opts.Mode == ModeAll || opts.Mode == ModePublic {
		if err := pb.RegisterSelfServiceHandlerServer(ctx, gw, deps.API); err != nil {
			return nil, fmt.Errorf("register self-service API: %w", err)
		}
	}
	if err := pb.RegisterDerivedKeysHandlerServer(ctx, gw, deps.API); err != nil {
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

	var h http.Handler = mux
	h = adminAuth(opts.AdminTokens, h)
	h = clientIPMiddleware(opts.ClientIPSource, h)
	h = bodyLimit(opts.MaxBodyBytes, h)
	h = securityHeaders(h)
	h = requestLog(log, opts.ExcludeHealthFromLog, h)
	h = requestID(h)
	h = recoverPanics(log, h)
	return h, nil
}

// Health registers /health/alive and /health/ready on mux. ready may be nil.
func Health(mux *http.ServeMux, ready func(ctx context.Context) error) {
	mux.HandleFunc("GET /health/alive", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
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
