// Package controlplane assembles the central Talos process: the HTTP/JSON API
// listener, the gRPC listener and the metrics/health listener, run together in
// one errgroup that shuts down gracefully when its context ends.
//
// It never imports the sidecar; the two meet on the wire through pkg/api.
package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/controlplane/httpapi"
	"github.com/talos-project/talos/controlplane/keys"
	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/serve"
	"github.com/talos-project/talos/pkg/telemetry"
)

// Config is the listener configuration of a control plane.
type Config struct {
	HTTPAddr    string // API (HTTP/JSON), default port 4420
	GRPCAddr    string // API (gRPC), default port 4421
	MetricsAddr string // metrics + health, default port 4422
	// HTTP configures the HTTP API; its Auth (tokens, certificate
	// identities, roles) is the rule of the gRPC listener too.
	HTTP httpapi.Options
	// Shutdown is the drain on SIGTERM (serve.shutdown): readiness fails at
	// once on the HTTP and metrics listeners and in the gRPC health
	// service, requests go on being served for its DrainDelay, then the
	// listeners stop accepting and what is in flight gets its Timeout
	// (default 30s).
	Shutdown serve.Shutdown
	// Limits bound connections and gRPC streams (serve.limits); gRPC
	// messages are capped at HTTP.MaxBodyBytes (at least 1 MiB) unless
	// Limits.MaxRecvMsgSize is set.
	Limits serve.Limits
	// HTTPTLS, GRPCTLS and MetricsTLS, when set, make the listeners serve
	// TLS with them (the HTTP ones HTTP/2 and HTTP/1.1); nil is
	// plaintext. They may give their certificates through
	// GetConfigForClient (pkg/tlsconf's reloading configurations) and ask
	// for client certificates.
	HTTPTLS, GRPCTLS, MetricsTLS *tls.Config
	// GRPCReflection serves gRPC server reflection on the gRPC listener
	// (serve.grpc.reflection); the health service answers for each service
	// name either way.
	GRPCReflection bool
}

// Deps are the collaborators of a Server.
type Deps struct {
	Keys     *keys.Service
	API      *grpcapi.Server
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// GRPC registers further services on the gRPC listener (the xDS
	// server).
	GRPC []func(*grpc.Server)
	// Runners run alongside the listeners until shutdown (the outbox
	// tailer, the xDS heartbeat).
	Runners []func(context.Context) error
}

// Server is one control-plane process. Create it with New, then Run it.
type Server struct {
	cfg      Config
	keys     *keys.Service
	log      *slog.Logger
	httpLn   *serve.Listener
	grpcLn   *serve.Listener
	metricLn *serve.Listener
	httpSrv  *http.Server
	metrics  *http.Server
	grpcSrv  *grpc.Server
	health   *health.Server
	drain    *serve.Drain
	runners  []func(context.Context) error
}

// New binds the listeners (so Addr works before Run) and builds the servers.
func New(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if cfg.Shutdown.Timeout <= 0 {
		cfg.Shutdown.Timeout = 30 * time.Second
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits.MaxRecvMsgSize <= 0 {
		cfg.Limits.MaxRecvMsgSize = int(max(cfg.HTTP.MaxBodyBytes, 1<<20))
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	s := &Server{cfg: cfg, log: log, keys: deps.Keys, drain: &serve.Drain{}}
	var err error
	if s.httpLn, err = serve.Listen(ctx, cfg.HTTPAddr, cfg.Limits.MaxConnections); err != nil {
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
	}
	if s.grpcLn, err = serve.Listen(ctx, cfg.GRPCAddr, cfg.Limits.MaxConnections); err != nil {
		s.httpLn.Close()
		return nil, fmt.Errorf("listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	if s.metricLn, err = serve.Listen(ctx, cfg.MetricsAddr, cfg.Limits.MetricsConnections()); err != nil {
		s.httpLn.Close()
		s.grpcLn.Close()
		return nil, fmt.Errorf("listen metrics %s: %w", cfg.MetricsAddr, err)
	}
	closeAll := func() { s.httpLn.Close(); s.grpcLn.Close(); s.metricLn.Close() }
	ready := func(ctx context.Context) error {
		if s.drain.Draining() {
			return httpapi.ErrShuttingDown
		}
		return deps.Keys.Ping(ctx)
	}

	h, err := httpapi.New(ctx, cfg.HTTP, httpapi.Deps{API: deps.API, Logger: log, Ready: ready})
	if err != nil {
		closeAll()
		return nil, err
	}
	if deps.Registry != nil {
		h = telemetry.InstrumentHTTP(deps.Registry, h)
		if err := telemetry.RegisterListeners(deps.Registry, map[string]*serve.Listener{"http": s.httpLn, "grpc": s.grpcLn, "metrics": s.metricLn}); err != nil {
			closeAll()
			return nil, err
		}
	}
	s.httpSrv = serve.HTTPServer(s.drain.Handler(h), s.httpLn, serve.HTTPTimeouts{}, cfg.HTTPTLS)
	s.httpSrv.ErrorLog = serve.ErrorLog(log)

	mmux := http.NewServeMux()
	httpapi.Health(mmux, ready)
	if deps.Registry != nil {
		mmux.Handle("GET /metrics", promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{Registry: deps.Registry}))
	}
	s.metrics = serve.HTTPServer(s.drain.Handler(mmux), s.metricLn, serve.HTTPTimeouts{Read: 5 * time.Second, Idle: 30 * time.Second, MaxHeaderBytes: 16 << 10}, cfg.MetricsTLS)
	s.metrics.ErrorLog = serve.ErrorLog(log)

	auth := cfg.HTTP.Auth
	s.grpcSrv = grpc.NewServer(append(serve.GRPCOptions(cfg.Limits, cfg.GRPCTLS),
		// The tap runs the whole rule (token and certificate: the peer is
		// in its context, see Auth.TapHandle) before a stream's first
		// message is read; the interceptors check again on every call
		// (defence in depth).
		grpc.InTapHandle(auth.TapHandle()),
		grpc.ChainUnaryInterceptor(recoverUnary(log), auth.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(recoverStream(log), auth.StreamInterceptor()),
	)...)
	mode := cfg.HTTP.Mode
	if mode == httpapi.ModeAll || mode == httpapi.ModeAdmin {
		pb.RegisterApiKeysServer(s.grpcSrv, deps.API)
		sidecarpb.RegisterVerifierServer(s.grpcSrv, deps.API.Sidecar())
	}
	if mode == httpapi.ModeAll || mode == httpapi.ModePublic {
		pb.RegisterSelfServiceServer(s.grpcSrv, deps.API)
	}
	pb.RegisterDerivedKeysServer(s.grpcSrv, deps.API)
	for _, reg := range deps.GRPC {
		reg(s.grpcSrv)
	}
	s.runners = deps.Runners
	s.health = serve.RegisterHealth(s.grpcSrv, cfg.GRPCReflection)
	if missing := grpcapi.Unlisted(s.grpcSrv.GetServiceInfo()); len(missing) > 0 {
		closeAll()
		slices.Sort(missing)
		return nil, fmt.Errorf("gRPC methods missing from the auth table (grpcapi): %s", strings.Join(missing, ", "))
	}
	return s, nil
}

// HTTPAddr, GRPCAddr and MetricsAddr return the bound addresses.
func (s *Server) HTTPAddr() net.Addr    { return s.httpLn.Addr() }
func (s *Server) GRPCAddr() net.Addr    { return s.grpcLn.Addr() }
func (s *Server) MetricsAddr() net.Addr { return s.metricLn.Addr() }

// Run serves until ctx ends, then drains and shuts every listener down as
// Config.Shutdown says. It returns the first serving error, or nil after a
// shutdown.
func (s *Server) Run(ctx context.Context) error {
	return serve.Run(ctx, serve.Group{
		HTTP: []serve.HTTP{
			{Name: "HTTP", Server: s.httpSrv, Listener: s.httpLn},
			{Name: "Metrics", Server: s.metrics, Listener: s.metricLn},
		},
		GRPC:            serve.GRPC{Name: "gRPC", Server: s.grpcSrv, Listener: s.grpcLn, TLS: s.cfg.GRPCTLS != nil},
		Tasks:           append([]func(context.Context) error{s.keys.Run}, s.runners...),
		Drain:           s.drain,
		OnShutdown:      s.health.Shutdown,
		Shutdown:        s.cfg.Shutdown,
		Logger:          s.log,
		ShutdownMessage: "shutting down",
	})
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if v := recover(); v != nil {
				log.Error("panic serving gRPC stream", slog.String("method", info.FullMethod), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				err = status.Error(codes.Internal, "An internal error occurred.")
			}
		}()
		return handler(srv, ss)
	}
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if v := recover(); v != nil {
				log.Error("panic serving gRPC request", slog.String("method", info.FullMethod), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				err = status.Error(codes.Internal, "An internal error occurred.")
			}
		}()
		return handler(ctx, req)
	}
}
