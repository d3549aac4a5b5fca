package serve

import (
	"crypto/tls"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what any peer, authenticated or not, can make one process
// hold: connections per listener, and streams and message bytes per gRPC
// connection. Both processes take them from configuration (serve.limits,
// proxy.limits); a zero field takes its default.
type Limits struct {
	// MaxConnections caps the open connections of each listener. The
	// metrics and health listener is capped at the smaller of this and
	// MaxMetricsConnections.
	MaxConnections int
	// MaxConcurrentStreams caps the concurrent gRPC streams (calls) of one
	// connection; a client opens another connection for more (Envoy does)
	// or waits for a free stream (grpc-go does). Excess streams are refused
	// with REFUSED_STREAM before any handler runs.
	MaxConcurrentStreams uint32
	// MaxRecvMsgSize caps one received gRPC message, in bytes.
	MaxRecvMsgSize int
}

// Defaults of Limits and the fixed limits shared by every listener.
const (
	DefaultMaxConnections       = 4096
	DefaultMaxConcurrentStreams = 100
	DefaultMaxRecvMsgSize       = 1 << 20
	// MaxMetricsConnections caps the metrics and health listener:
	// Prometheus and the probes need a handful, and idle ones give way to
	// new ones (see [Listener]).
	MaxMetricsConnections = 256

	// ReadHeaderTimeout bounds the wait for a request's headers, and
	// HandshakeTimeout the wait for a new gRPC connection's HTTP/2 preface.
	// Both include the TLS handshake on a TLS listener: a peer that opens
	// a connection and never sends its ClientHello is closed when they
	// run out.
	ReadHeaderTimeout = 5 * time.Second
	HandshakeTimeout  = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive HTTP connection idle that long.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxHeaderBytes caps an HTTP request's header block.
	DefaultMaxHeaderBytes = 64 << 10
	// MaxHeaderListSize caps the header block (metadata) of one gRPC call.
	MaxHeaderListSize = 64 << 10
	// GRPCMaxConnectionIdle closes a gRPC connection without calls for that
	// long; clients reconnect when they need one.
	GRPCMaxConnectionIdle = 5 * time.Minute
)

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if l.MaxRecvMsgSize <= 0 {
		l.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	return l
}

// MetricsConnections is the cap of the metrics and health listener.
func (l Limits) MetricsConnections() int {
	return min(l.WithDefaults().MaxConnections, MaxMetricsConnections)
}

// HTTPTimeouts are what differs between the HTTP servers; a zero field takes
// its default. There is no streaming HTTP endpoint, so every server has a
// write timeout.
type HTTPTimeouts struct {
	// Read bounds reading a whole request, body included (default 15s).
	Read time.Duration
	// Write bounds the handler and the writing of its response (default 15s).
	Write time.Duration
	// Idle closes a keep-alive connection between requests (default
	// DefaultIdleTimeout).
	Idle time.Duration
	// MaxHeaderBytes caps the request header block (default
	// DefaultMaxHeaderBytes).
	MaxHeaderBytes int
}

// HTTPServer returns an http.Server for h on ln with every timeout set and
// ln told which connections are idle, so that a full listener can make room
// (see [Listener]). With a non-nil tlsCfg the server serves TLS (HTTP/2 and
// HTTP/1.1, by ALPN) when [Run] runs it; nil is plaintext. tlsCfg may give
// its certificates through GetCertificate or GetConfigForClient (a
// reloading configuration) rather than Certificates. The TLS handshake
// counts against the header timeout (the smaller of ReadHeaderTimeout and
// t.Read).
func HTTPServer(h http.Handler, ln *Listener, t HTTPTimeouts, tlsCfg *tls.Config) *http.Server {
	if t.Read <= 0 {
		t.Read = 15 * time.Second
	}
	if t.Write <= 0 {
		t.Write = 15 * time.Second
	}
	if t.Idle <= 0 {
		t.Idle = DefaultIdleTimeout
	}
	if t.MaxHeaderBytes <= 0 {
		t.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(ReadHeaderTimeout, t.Read),
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ConnState:         ln.ConnState,
		TLSConfig:         alpn(tlsCfg, "h2", "http/1.1"),
	}
}

// alpn returns a copy of cfg (nil for nil) whose handshakes offer protos
// when the configuration they use offers none. net/http adds its protocols
// to cfg itself but not to the configuration a GetConfigForClient hook
// returns, so without this every client of a reloading configuration would
// be held to HTTP/1.1. (gRPC's credentials.NewTLS does the same for "h2".)
func alpn(cfg *tls.Config, protos ...string) *tls.Config {
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	if get := cfg.GetConfigForClient; get != nil {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hello)
			if err != nil || c == nil || len(c.NextProtos) > 0 {
				return c, err
			}
			c = c.Clone()
			c.NextProtos = protos
			return c, nil
		}
	}
	return cfg
}

// GRPCOptions are the server options that bound a gRPC server's resources:
// streams per connection, message and metadata size, the handshake, idle
// connections and keepalive pings, and with a non-nil tlsCfg its transport
// credentials (nil is plaintext). The handshake bound (HandshakeTimeout)
// covers the TLS handshake. Callers add their interceptors and the like.
func GRPCOptions(l Limits, tlsCfg *tls.Config) []grpc.ServerOption {
	l = l.WithDefaults()
	var creds []grpc.ServerOption
	if tlsCfg != nil {
		creds = append(creds, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	return append(creds,
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.ConnectionTimeout(HandshakeTimeout),
		// Envoy and the sidecars keep long-lived connections; ping them
		// to find dead peers, and close those without calls for long.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: GRPCMaxConnectionIdle, Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Clients may ping every 5s, even without calls; faster is a
		// flood and ends the connection.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
}
