// Package sidecar assembles `talos proxy`: the Envoy ext_authz gRPC listener
// (9191), the HTTP authorization and verify-proxy listener (4430) and the
// metrics/health listener (4432), run together in one errgroup that shuts
// down gracefully when its context ends. The verification path itself is
// sidecar/pipeline; the wire adapters are in extauthz.
//
// It never imports the control plane; the two meet on the wire through
// pkg/api (sidecar/upstream).
package sidecar

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/serve"
	"github.com/talos-project/talos/pkg/telemetry"
)

// Config is the listener configuration of a sidecar.
type Config struct {
	ExtAuthzAddr string // Envoy ext_authz gRPC, default port 9191
	HTTPAddr     string // HTTP authorization + verify proxy, default port 4430
	MetricsAddr  string // metrics + health, default port 4432
	// Shutdown is the drain on SIGTERM (proxy.shutdown): readiness fails at
	// once (HTTP /health/ready 503 on the HTTP and metrics listeners, gRPC
	// health NOT_SERVING), checks go on being answered for its DrainDelay,
	// then the listeners stop accepting and what is in flight gets its
	// Timeout (default 10s).
	Shutdown serve.Shutdown
	// WaitForUpstream (proxy.readiness.wait_for_upstream) keeps readiness
	// failing until the control plane has answered once or the
	// invalidation stream has synced once.
	WaitForUpstream bool
	// Limits bound connections, ext_authz streams and CheckRequest size
	// (proxy.limits).
	Limits serve.Limits
	// ExtAuthzTLS, HTTPTLS and MetricsTLS, when set, make the listeners
	// serve TLS with them (the HTTP ones HTTP/2 and HTTP/1.1); nil is
	// plaintext. They may give their certificates through
	// GetConfigForClient (pkg/tlsconf's reloading configurations) and ask
	// for client certificates.
	ExtAuthzTLS, HTTPTLS, MetricsTLS *tls.Config
	// ExtAuthzReflection serves gRPC server reflection on the ext_authz
	// listener (proxy.extauthz.reflection); the health service answers
	// for each service name either way.
	ExtAuthzReflection bool
}

// Runner is a background task of the sidecar (the pipeline's key refresh,
// later the invalidation stream).
type Runner interface {
	Run(ctx context.Context) error
}

// Upstream reports the state of the connection to the control plane.
type Upstream interface {
	// Ready: the connection is up (reported in /health/ready's body).
	Ready() bool
	// AnsweredOnce: the control plane has answered at least once.
	AnsweredOnce() bool
}

// Stream reports the state of the invalidation stream.
type Stream interface {
	// Fresh: cached verdicts may be trusted now.
	Fresh() bool
	// SyncedOnce: the stream has synced at least once.
	SyncedOnce() bool
}

// Deps are the collaborators of a Server.
type Deps struct {
	ExtAuthz *extauthz.Server
	Upstream Upstream
	// Stream is the invalidation stream; nil when disabled.
	Stream   Stream
	Runners  []Runner
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// Server is one sidecar process. Create it with New, then Run it.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	grpcLn   *serve.Listener
	httpLn   *serve.Listener
	metricLn *serve.Listener
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	metrics  *http.Server
	health   *health.Server
	drain    *serve.Drain
}

// New binds the listeners (so the Addr methods work before Run) and builds
// the servers.
func New(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if deps.ExtAuthz == nil {
		return nil, errors.New("sidecar: an ext_authz server is required")
	}
	if cfg.Shutdown.Timeout <= 0 {
		cfg.Shutdown.Timeout = 10 * time.Second
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	s := &Server{cfg: cfg, deps: deps, log: log, drain: &serve.Drain{}}
	var err error
	if s.grpcLn, err = serve.Listen(ctx, cfg.ExtAuthzAddr, cfg.Limits.MaxConnections); err != nil {
		return nil, fmt.Errorf("listen ext_authz %s: %w", cfg.ExtAuthzAddr, err)
	}
	if s.httpLn, err = serve.Listen(ctx, cfg.HTTPAddr, cfg.Limits.MaxConnections); err != nil {
		s.grpcLn.Close()
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
	}
	if s.metricLn, err = serve.Listen(ctx, cfg.MetricsAddr, cfg.Limits.MetricsConnections()); err != nil {
		s.grpcLn.Close()
		s.httpLn.Close()
		return nil, fmt.Errorf("listen metrics %s: %w", cfg.MetricsAddr, err)
	}
	if deps.Registry != nil {
		if err := telemetry.RegisterListeners(deps.Registry, map[string]*serve.Listener{"extauthz": s.grpcLn, "http": s.httpLn, "metrics": s.metricLn}); err != nil {
			s.grpcLn.Close()
			s.httpLn.Close()
			s.metricLn.Close()
			return nil, err
		}
	}

	// Envoy keeps long-lived HTTP/2 connections to its ext_authz cluster;
	// GRPCOptions lets them live and keeps them healthy. Envoy opens
	// another connection when one reaches MaxConcurrentStreams.
	s.grpcSrv = grpc.NewServer(append(serve.GRPCOptions(cfg.Limits, cfg.ExtAuthzTLS),
		// Stop waits for running handlers, so nothing touches the caches
		// after they are closed.
		grpc.WaitForHandlers(true),
	)...)
	deps.ExtAuthz.Register(s.grpcSrv)
	s.health = serve.RegisterHealth(s.grpcSrv, cfg.ExtAuthzReflection)

	authz := deps.ExtAuthz.HTTPHandler()
	hmux := http.NewServeMux()
	s.healthRoutes(hmux)
	// Every path but the two health routes is a check, judged as sent: a
	// ServeMux would answer an unclean path (//x, /a/../b) with a redirect
	// that repeats it, query and all, instead of a verdict.
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health/alive" || r.URL.Path == "/health/ready" {
			hmux.ServeHTTP(w, r)
			return
		}
		authz.ServeHTTP(w, r)
	})
	s.httpSrv = serve.HTTPServer(s.drain.Handler(front), s.httpLn, serve.HTTPTimeouts{Read: 10 * time.Second, Write: 10 * time.Second, Idle: 120 * time.Second, MaxHeaderBytes: 256 << 10}, cfg.HTTPTLS)
	s.httpSrv.ErrorLog = serve.ErrorLog(log)

	mmux := http.NewServeMux()
	s.healthRoutes(mmux)
	if deps.Registry != nil {
		mmux.Handle("GET /metrics", promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{Registry: deps.Registry}))
	}
	s.metrics = serve.HTTPServer(s.drain.Handler(mmux), s.metricLn, serve.HTTPTimeouts{Read: 5 * time.Second, Idle: 30 * time.Second, MaxHeaderBytes: 16 << 10}, cfg.MetricsTLS)
	s.metrics.ErrorLog = serve.ErrorLog(log)
	return s, nil
}

// ExtAuthzAddr, HTTPAddr and MetricsAddr return the bound addresses.
func (s *Server) ExtAuthzAddr() net.Addr { return s.grpcLn.Addr() }
func (s *Server) HTTPAddr() net.Addr     { return s.httpLn.Addr() }
func (s *Server) MetricsAddr() net.Addr  { return s.metricLn.Addr() }

// healthRoutes serves /health/alive (the process answers) and /health/ready.
//
// Readiness fails (503, with a JSON reason) in two cases only:
//   - shutdown has begun (SIGTERM): Envoy and the endpoints controller move
//     away during the drain delay while checks are still answered;
//   - with WaitForUpstream, the sidecar has not yet heard the control plane
//     once (an answer, or an invalidation sync): a fresh sidecar with
//     nothing cached could only deny.
//
// Once ready, a sidecar stays ready through later control-plane outages: it
// answers from its caches (stale-if-error, within the stream's staleness
// bound) and denies the rest, and taking it out of rotation would take its
// pod's traffic with it. The states of the upstream and of the invalidation
// stream are reported in the body for operators.
func (s *Server) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /health/alive", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) {
		up := "unknown"
		if s.deps.Upstream != nil {
			up = "down"
			if s.deps.Upstream.Ready() {
				up = "ready"
			}
		}
		inv := "off"
		if s.deps.Stream != nil {
			inv = "stale"
			if s.deps.Stream.Fresh() {
				inv = "fresh"
			}
		}
		body := map[string]string{"status": "ok", "upstream": up, "invalidation": inv}
		reason := ""
		switch {
		case s.drain.Draining():
			reason = "shutting down"
		case s.cfg.WaitForUpstream && !s.warm():
			reason = "waiting for the first answer from the control plane"
		}
		if reason != "" {
			body["status"], body["reason"] = "unavailable", reason
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
}

// warm reports whether the sidecar has heard the control plane once.
func (s *Server) warm() bool {
	return (s.deps.Upstream != nil && s.deps.Upstream.AnsweredOnce()) || (s.deps.Stream != nil && s.deps.Stream.SyncedOnce())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Run serves until ctx ends, then drains and shuts every listener down as
// Config.Shutdown says.
func (s *Server) Run(ctx context.Context) error {
	tasks := make([]func(context.Context) error, len(s.deps.Runners))
	for i, r := range s.deps.Runners {
		tasks[i] = r.Run
	}
	return serve.Run(ctx, serve.Group{
		HTTP: []serve.HTTP{
			{Name: "Proxy HTTP", Server: s.httpSrv, Listener: s.httpLn},
			{Name: "Proxy metrics", Server: s.metrics, Listener: s.metricLn},
		},
		GRPC:            serve.GRPC{Name: "ext_authz", Server: s.grpcSrv, Listener: s.grpcLn, TLS: s.cfg.ExtAuthzTLS != nil},
		Tasks:           tasks,
		Drain:           s.drain,
		OnShutdown:      s.health.Shutdown,
		Shutdown:        s.cfg.Shutdown,
		Logger:          s.log,
		ShutdownMessage: "proxy shutting down",
	})
}
