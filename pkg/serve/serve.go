// Package serve runs the listeners of one process together: HTTP servers, a
// gRPC server and background tasks in one errgroup, drained and shut down
// gracefully when the context ends. The control plane and the sidecar both
// use it, so they start, log and stop the same way.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
)

// HTTP is one HTTP server and its bound listener. A server with a
// TLSConfig (see [HTTPServer]) serves TLS.
type HTTP struct {
	Name     string // logged as "<Name> server started"
	Server   *http.Server
	Listener net.Listener
}

// GRPC is the gRPC server and its bound listener.
type GRPC struct {
	Name     string
	Server   *grpc.Server
	Listener net.Listener
	// TLS says the server has TLS credentials (see [GRPCOptions]); it is
	// only logged.
	TLS bool
}

// Shutdown says how [Run] stops once its context ends: readiness fails at
// once (Group.Drain, Group.OnShutdown), the servers go on serving for
// DrainDelay, new connections included, and then stop accepting; what is in
// flight gets Timeout to finish before the remaining connections are closed.
type Shutdown struct {
	// DrainDelay is how long the servers keep serving after readiness
	// failed; 0 skips the drain.
	DrainDelay time.Duration
	// Timeout bounds the graceful stop after the drain; zero means
	// DefaultShutdownTimeout.
	Timeout time.Duration
	// Hurry, when it is closed (a second signal), ends the drain delay
	// early; nil never does.
	Hurry <-chan struct{}
}

// DefaultShutdownTimeout is Shutdown.Timeout when unset.
const DefaultShutdownTimeout = 10 * time.Second

// Drain tells handlers that shutdown has begun: readiness handlers answer
// 503 while Draining, and [Drain.Handler] asks HTTP/1 clients to close
// their keep-alive connections. The zero value is not draining; it is safe
// for concurrent use.
type Drain struct{ on atomic.Bool }

// Draining reports whether shutdown has begun. A nil Drain never drains.
func (d *Drain) Draining() bool { return d != nil && d.on.Load() }

// Start marks the drain as begun ([Run] does).
func (d *Drain) Start() { d.on.Store(true) }

// Handler wraps h: while draining, HTTP/1.x responses carry
// "Connection: close", so a keep-alive client opens its next connection
// elsewhere (the load balancer no longer sends it here) instead of holding
// this one until the listener closes. The connection is closed after the
// response, never while a request may be on its way, as closing idle
// connections would. HTTP/2 clients are told by the GOAWAY of the graceful
// stop.
func (d *Drain) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Draining() && r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// Group is what Run runs.
type Group struct {
	HTTP []HTTP
	GRPC GRPC
	// Tasks run until the servers stop accepting (the end of the drain), so
	// that the invalidation stream and the outbox go on while requests are
	// still served.
	Tasks []func(context.Context) error
	// Drain, when set, is started first when shutdown begins.
	Drain *Drain
	// OnShutdown runs when shutdown begins, right after Drain is started
	// (health servers report NOT_SERVING).
	OnShutdown func()
	Shutdown   Shutdown
	Logger     *slog.Logger
	// ShutdownMessage is logged when shutdown begins.
	ShutdownMessage string
}

// Run serves until ctx ends, then drains and shuts everything down as
// g.Shutdown says. It returns the first serving error, or nil after a
// shutdown, graceful or forced by the timeout (which is logged). After a
// serving error there is no drain delay: the process is failing anyway.
func Run(ctx context.Context, g Group) error {
	if g.Shutdown.Timeout <= 0 {
		g.Shutdown.Timeout = DefaultShutdownTimeout
	}
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	eg, gctx := errgroup.WithContext(ctx)
	// The tasks outlive ctx until the drain ends, but not a serving error.
	tctx, stopTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTasks()
	stop := context.AfterFunc(gctx, func() {
		if ctx.Err() == nil {
			stopTasks()
		}
	})
	defer stop()
	for _, t := range g.Tasks {
		eg.Go(func() error { return t(tctx) })
	}
	for _, h := range g.HTTP {
		eg.Go(func() error {
			tls := h.Server.TLSConfig != nil
			log.Info(h.Name+" server started", slog.String("addr", h.Listener.Addr().String()), slog.Bool("tls", tls))
			var err error
			if tls {
				// The certificates are in TLSConfig; ServeTLS sets up
				// HTTP/2 on it, which Serve on a tls.Listener would not.
				err = h.Server.ServeTLS(h.Listener, "", "")
			} else {
				err = h.Server.Serve(h.Listener)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s server: %w", h.Name, err)
			}
			return nil
		})
	}
	eg.Go(func() error {
		log.Info(g.GRPC.Name+" server started", slog.String("addr", g.GRPC.Listener.Addr().String()), slog.Bool("tls", g.GRPC.TLS))
		if err := g.GRPC.Server.Serve(g.GRPC.Listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("%s server: %w", g.GRPC.Name, err)
		}
		return nil
	})
	eg.Go(func() error {
		<-gctx.Done()
		begin := time.Now()
		if g.Drain != nil {
			g.Drain.Start()
		}
		if g.OnShutdown != nil {
			g.OnShutdown()
		}
		delay := g.Shutdown.DrainDelay
		if ctx.Err() == nil {
			delay = 0 // a serving error, not a signal
		}
		log.Info(g.ShutdownMessage+": readiness failed, draining", slog.Duration("drain_delay", delay), slog.Duration("timeout", g.Shutdown.Timeout))
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-g.Shutdown.Hurry:
				t.Stop()
				log.Info("second signal: drain delay cut short", slog.Duration("drained", time.Since(begin)))
			}
		}
		stopping := time.Now()
		log.Info("drain over: no longer accepting; waiting for requests in flight", slog.Duration("drained", stopping.Sub(begin)))
		stopTasks()
		forced := gracefulStop(g, g.Shutdown.Timeout)
		attrs := []any{slog.Duration("stopping", time.Since(stopping)), slog.Duration("total", time.Since(begin))}
		if forced {
			log.Warn("shutdown timeout passed: remaining connections closed", attrs...)
		} else {
			log.Info("shutdown complete", attrs...)
		}
		return nil
	})
	return eg.Wait()
}

// gracefulStop stops every server of g from accepting and waits up to
// timeout for what is in flight, then closes what remains. It reports
// whether it had to.
func gracefulStop(g Group, timeout time.Duration) (forced bool) {
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() { g.GRPC.Server.GracefulStop(); close(stopped) }()
	shut := make(chan bool, len(g.HTTP))
	for _, h := range g.HTTP {
		go func() {
			if err := h.Server.Shutdown(sctx); err != nil {
				_ = h.Server.Close()
				shut <- true
				return
			}
			shut <- false
		}()
	}
	for range g.HTTP {
		forced = <-shut || forced
	}
	select {
	case <-stopped:
	case <-sctx.Done():
		g.GRPC.Server.Stop()
		<-stopped
		forced = true
	}
	return forced
}
