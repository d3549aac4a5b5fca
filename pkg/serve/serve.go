// Package serve runs the listeners of one process together: HTTP servers, a
// gRPC server and background tasks in one errgroup, shut down gracefully
// when the context ends. The control plane and the sidecar both use it, so
// they start, log and stop the same way.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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

// Group is what Run runs.
type Group struct {
	HTTP  []HTTP
	GRPC  GRPC
	Tasks []func(context.Context) error
	// OnShutdown runs first when shutdown begins (health servers report
	// NOT_SERVING).
	OnShutdown func()
	// Timeout bounds the graceful shutdown; past it, gRPC stops hard.
	Timeout time.Duration
	Logger  *slog.Logger
	// ShutdownMessage is logged when shutdown begins.
	ShutdownMessage string
}

// Run serves until ctx ends, then shuts everything down gracefully within
// g.Timeout. It returns the first serving error, or nil after a clean
// shutdown.
func Run(ctx context.Context, g Group) error {
	eg, gctx := errgroup.WithContext(ctx)
	for _, t := range g.Tasks {
		eg.Go(func() error { return t(gctx) })
	}
	for _, h := range g.HTTP {
		eg.Go(func() error {
			tls := h.Server.TLSConfig != nil
			g.Logger.Info(h.Name+" server started", slog.String("addr", h.Listener.Addr().String()), slog.Bool("tls", tls))
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
		g.Logger.Info(g.GRPC.Name+" server started", slog.String("addr", g.GRPC.Listener.Addr().String()), slog.Bool("tls", g.GRPC.TLS))
		if err := g.GRPC.Server.Serve(g.GRPC.Listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("%s server: %w", g.GRPC.Name, err)
		}
		return nil
	})
	eg.Go(func() error {
		<-gctx.Done()
		g.Logger.Info(g.ShutdownMessage)
		if g.OnShutdown != nil {
			g.OnShutdown()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.Timeout)
		defer cancel()
		stopped := make(chan struct{})
		go func() { g.GRPC.Server.GracefulStop(); close(stopped) }()
		var errs []error
		for _, h := range g.HTTP {
			errs = append(errs, h.Server.Shutdown(sctx))
		}
		select {
		case <-stopped:
		case <-sctx.Done():
			g.GRPC.Server.Stop()
		}
		return errors.Join(errs...)
	})
	return eg.Wait()
}
