package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/pkg/serve"
)

// ServerOptions configure a [Server].
type ServerOptions struct {
	// Listener is bound by the caller (":8443" in a pod; 127.0.0.1:0 in
	// tests).
	Listener net.Listener
	// TLS is the listener's configuration, from pkg/tlsconf so that a
	// rotated certificate is picked up. Required: the API server calls
	// webhooks over HTTPS only.
	TLS *tls.Config
	// DrainDelay is how long reviews keep being served after shutdown
	// begins, with /health/ready failing, so that the endpoints controller
	// takes the pod out of the webhook's Service before the listener
	// closes (an API server calling a closed listener fails the pod
	// creation under failurePolicy Fail). Zero closes at once.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the wait for reviews in flight once the
	// listener is closed (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// MaxConnections caps the webhook's open connections: the API servers keep
// a few each.
const MaxConnections = 256

// Server serves the webhook and its health endpoints over HTTPS.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	drain   time.Duration
	timeout time.Duration
	log     *slog.Logger
	// draining turns /health/ready to 503 once shutdown begins, so the
	// Service stops sending reviews before the listener closes.
	draining atomic.Bool
}

// NewServer returns a server for h.
func NewServer(h *Handler, o ServerOptions) (*Server, error) {
	if o.Listener == nil {
		return nil, errors.New("inject: no listener")
	}
	if o.TLS == nil {
		return nil, errors.New("inject: the webhook needs TLS (--tls-cert-file, --tls-key-file)")
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{ln: o.Listener, drain: o.DrainDelay, timeout: o.ShutdownTimeout, log: o.Logger}
	mux := http.NewServeMux()
	mux.Handle("/inject", h)
	mux.HandleFunc("GET /health/alive", func(w http.ResponseWriter, _ *http.Request) { writeHealth(w, true) })
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) { writeHealth(w, !s.draining.Load()) })
	ln, ok := o.Listener.(*serve.Listener)
	if !ok {
		ln = serve.LimitListener(o.Listener, MaxConnections)
	}
	s.srv = serve.HTTPServer(mux, ln, serve.HTTPTimeouts{Read: 10 * time.Second, Write: 10 * time.Second}, o.TLS)
	s.srv.ErrorLog = serve.ErrorLog(o.Logger)
	s.ln = ln
	return s, nil
}

func writeHealth(w http.ResponseWriter, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"shutting down"}`))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then stops: readiness fails at once, reviews
// keep being served for the drain delay, then the listener closes and
// reviews in flight finish within the shutdown timeout. It returns nil
// after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		s.log.Info("injector server started", slog.String("addr", s.ln.Addr().String()), slog.Bool("tls", true))
		errc <- s.srv.ServeTLS(s.ln, "", "")
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("injector server: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("Shutting down the injector", slog.Duration("drain_delay", s.drain))
	s.draining.Store(true)
	if s.drain > 0 {
		select {
		case <-time.After(s.drain):
		case err := <-errc:
			return fmt.Errorf("injector server: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
