package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
)

// Defaults of Options.
const (
	DefaultTimeout = 2 * time.Second
	DefaultRetries = 2
	DefaultBackoff = 20 * time.Millisecond
	// MaxBackoff caps the retry delay.
	MaxBackoff = time.Second
)

// connectParams are the reconnection parameters of the connection to the
// control plane, which the invalidation stream shares. gRPC's defaults let
// the delay between connection attempts grow to 120s, so after a long
// outage a sidecar kept failing closed for a minute or more after the
// control plane was back; here it grows from 100ms to at most about a
// second (±20% jitter, so sidecars restarted together spread out), and an
// attempt that connects but hangs is given up after MinConnectTimeout.
func connectParams() grpc.ConnectParams {
	return grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 3 * time.Second,
	}
}

// Options configures a Client.
type Options struct {
	// Addr is the control plane's gRPC address, host:port (resolved by
	// DNS). Required.
	Addr string
	// Token, when set, is sent as "authorization: Bearer <token>" metadata
	// on every call made on the connection, the invalidation stream's
	// included when it shares the connection (see Conn).
	Token string
	// TransportCredentials secure the connection: credentials.NewTLS with
	// the control plane's CA (RootCAs), its name (ServerName) and, for
	// mTLS, the sidecar's certificate. Nil is plaintext. With TLS the
	// token is never sent on a connection that is not (gRPC refuses the
	// call).
	TransportCredentials credentials.TransportCredentials
	// Timeout bounds each attempt; the caller's deadline, when earlier,
	// wins. Zero means DefaultTimeout.
	Timeout time.Duration
	// Retries is the number of extra attempts after an UNAVAILABLE (or an
	// attempt that ran out of its Timeout while the caller's context was
	// still live). Zero means DefaultRetries; a negative value turns
	// retries off.
	Retries int
	// Backoff is the delay bound before the first retry; it doubles for
	// each further retry, up to MaxBackoff, and the actual delay is drawn
	// uniformly from [0, bound] ("full jitter"). Zero means DefaultBackoff.
	Backoff time.Duration
	// DialOptions are appended to the client's own (for tests: a custom
	// dialer, say).
	DialOptions []grpc.DialOption
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// Client calls the control plane. It is safe for concurrent use. Build one
// with New and Close it when done.
type Client struct {
	conn     *grpc.ClientConn
	verifier sidecarpb.VerifierClient
	derived  pb.DerivedKeysClient
	timeout  time.Duration
	retries  int
	backoff  time.Duration
	log      *slog.Logger

	calls  atomic.Uint64
	lastOK atomic.Bool
	// answered: some attempt got an answer (see AnsweredOnce).
	answered atomic.Bool
	// jitter returns the delay before a retry, in [0, bound].
	jitter func(bound time.Duration) time.Duration
}

var (
	_ credential.Verifier      = (*Client)(nil)
	_ credential.BatchVerifier = (*Client)(nil)
)

// New returns a Client for o.Addr. It does not wait for a connection: the
// channel starts connecting in the background and calls made before it is
// up wait for it within their Timeout. An empty Addr or a negative duration
// is ErrInvalidArgument.
//
// With o.TransportCredentials the connection is TLS (or mTLS): a control
// plane whose certificate does not verify is never reached, and every call
// fails with ErrUnavailable (an outage: the sidecar fails closed), never
// with a verdict. Without them it is plaintext, for a control plane on
// loopback or behind a mesh that encrypts pod-to-pod traffic; the bearer
// token is then only as secret as that network path.
//
// Keepalive pings go out after 60s without reads while a call is in flight
// (not on an idle connection, which the control plane's default gRPC
// enforcement policy would punish as too many pings), so a call stuck on a
// dead connection is cut within 70s even if TCP never reports the loss;
// each attempt's Timeout usually cuts it much sooner.
func New(o Options) (*Client, error) {
	switch {
	case o.Addr == "":
		return nil, credential.Invalid("upstream: the control plane address is required")
	case o.Timeout < 0 || o.Backoff < 0:
		return nil, credential.Invalid("upstream: durations must not be negative")
	}
	c := &Client{
		timeout: o.Timeout,
		retries: o.Retries,
		backoff: o.Backoff,
		log:     o.Logger,
		jitter:  fullJitter,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.backoff == 0 {
		c.backoff = DefaultBackoff
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	creds := o.TransportCredentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 10 * time.Second}),
		grpc.WithConnectParams(connectParams()),
		// Retries are this package's, counted by Calls; a service config
		// published in DNS must not add a retry policy of its own. (gRPC's
		// transparent retry of a call that never reached the server stays
		// on; it happens within one attempt.)
		grpc.WithDisableServiceConfig(),
	}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{
			md:     map[string]string{"authorization": "Bearer " + o.Token},
			secure: creds.Info().SecurityProtocol != insecure.NewCredentials().Info().SecurityProtocol,
		}))
	}
	opts = append(opts, o.DialOptions...)
	conn, err := grpc.NewClient(o.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w: %w", credential.ErrInvalidArgument, err)
	}
	conn.Connect()
	c.conn = conn
	c.verifier = sidecarpb.NewVerifierClient(conn)
	c.derived = pb.NewDerivedKeysClient(conn)
	return c, nil
}

// bearer sends the sidecar's token. The map is shared by all calls; gRPC
// only reads it.
type bearer struct {
	md map[string]string
	// secure: the connection has transport security, so the token must
	// not go out without it.
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return b.md, nil
}

// RequireTransportSecurity is true on a TLS connection, so that gRPC
// refuses to send the token without TLS, and false on a plaintext one (see
// New).
func (b bearer) RequireTransportSecurity() bool { return b.secure }

func fullJitter(bound time.Duration) time.Duration {
	if bound <= 0 {
		return 0
	}
	return rand.N(bound + 1)
}

// Ready reports whether the client can reach the control plane, for the
// sidecar's readiness probe: true when the gRPC channel is Ready, or when
// it is Idle (gRPC closed the connection after a period without calls) and
// the last completed attempt got an answer (OK or INVALID_ARGUMENT).
// Connecting, TransientFailure and Shutdown (after Close) are false. On an
// Idle channel Ready also starts a reconnection, so that a probe, not only
// traffic, brings the channel back. Ready says nothing about authorization:
// a rejected token shows as failed calls and an error log.
func (c *Client) Ready() bool {
	switch c.conn.GetState() {
	case connectivity.Ready:
		return true
	case connectivity.Idle:
		c.conn.Connect()
		return c.lastOK.Load()
	}
	return false
}

// AnsweredOnce reports whether the control plane has ever answered a call
// of this client (OK, or INVALID_ARGUMENT: it was reached and judged the
// request), for the sidecar's readiness. It never turns false again.
func (c *Client) AnsweredOnce() bool { return c.answered.Load() }

// Calls returns the number of RPC attempts made so far, retries included.
func (c *Client) Calls() uint64 { return c.calls.Load() }

// Conn returns the client's connection to the control plane, for the
// sidecar's other client of it (the invalidation stream, through
// invalidation.Options.Conn), so that the sidecar holds one connection, one
// TLS session and one token. The Client owns it: Close closes it.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection, shared or not. Calls in flight and later
// calls fail with ErrUnavailable. A second Close returns an error.
func (c *Client) Close() error {
	return c.conn.Close()
}
