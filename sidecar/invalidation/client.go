package invalidation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/talos-project/talos/pkg/credential"
)

// Applier receives invalidations. The sidecar's pipeline implements it.
type Applier interface {
	// Invalidate marks every cached verdict of the key fetched before seq as stale.
	Invalidate(tenant credential.Tenant, keyID credential.KeyID, seq int64)
	// Advance records that every change up to seq is known (the watermark).
	Advance(seq int64)
	// Forget says the server no longer holds the invalidations up to seq:
	// every cached verdict tagged below it is stale, since the tombstone
	// that would mark it may be gone.
	Forget(seq int64)
}

// Defaults of Options.
const (
	DefaultMinBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the reconnection delay at about a second, so
	// that a sidecar hears again within about a second of the control
	// plane's return, however long it was gone.
	DefaultMaxBackoff   = time.Second
	DefaultMaxStaleness = 10 * time.Second
)

// minIdle is the shortest silence after which a stream is presumed dead:
// three of the heartbeats the server sends at least every second. Without
// this floor a small MaxStaleness would recycle healthy streams.
const minIdle = 3 * time.Second

// maxRecvMsgSize bounds one response. The first response of a stream holds
// every retained invalidation the client lacks, which after a long outage
// can exceed gRPC's 4 MiB default (a resource is about 150 bytes).
const maxRecvMsgSize = 64 << 20

// Options configures a Client.
type Options struct {
	// Conn, when set, is the connection to the control plane to open
	// streams on: the sidecar's one connection, made by sidecar/upstream
	// (upstream.Client.Conn), which carries the transport security and
	// the token. The Client does not close it. Addr, Token and
	// DialOptions must then be empty.
	Conn grpc.ClientConnInterface
	// Addr is the control plane's gRPC address, host:port, dialed
	// (plaintext) when Conn is nil. Required then.
	Addr string
	// Token, when set, is sent as "authorization: Bearer <token>" metadata
	// on a connection the Client dials.
	Token string
	// NodeID identifies this sidecar to the control plane (xDS node ID).
	// Empty means "<hostname>-<pid>".
	NodeID string
	// MinBackoff and MaxBackoff bound the delay before a reconnection: it
	// doubles from MinBackoff up to MaxBackoff for each stream in a row that
	// ended before it synced, and is drawn from [bound/2, bound]. Zero
	// means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxStaleness is how long the client may go without hearing from the
	// server (any applied response, heartbeats included) before Fresh turns
	// false. Zero means DefaultMaxStaleness. A stream silent for half of it,
	// and at least 3s, is presumed dead and replaced.
	MaxStaleness time.Duration
	// DialOptions are appended to the client's own, on a connection the
	// Client dials.
	DialOptions []grpc.DialOption
	// Now is the clock of the staleness watchdog; nil means time.Now.
	Now func() time.Time
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// State is a snapshot of a Client, for diagnostics.
type State struct {
	// Connected: the current stream has received a response.
	Connected bool
	// Synced: the current stream has applied a response, and no resource
	// it rejected is still outstanding.
	Synced bool
	// LastHeard is when the last response was applied; zero if never.
	LastHeard time.Time
	// Watermark is the highest seq passed to Applier.Advance.
	Watermark int64
	// Reconnects counts streams opened after the first.
	Reconnects uint64
	// Applied counts key invalidations passed to Applier.Invalidate.
	Applied uint64
	// NACKs counts responses rejected.
	NACKs uint64
}

// Client follows the control plane's invalidation stream. It is safe for
// concurrent use; Run may run once at a time. Build one with New, run it
// with Run and Close it when done. The zero value is not usable.
type Client struct {
	applier Applier
	// conn is the connection the Client dialed, nil on a shared one.
	conn *grpc.ClientConn
	// shared reports the state of a shared connection, when it can (a
	// *grpc.ClientConn can).
	shared     interface{ GetState() connectivity.State }
	ads        discoveryv3.AggregatedDiscoveryServiceClient
	node       *corev3.Node
	minBackoff time.Duration
	maxBackoff time.Duration
	maxStale   time.Duration
	idle       time.Duration // a stream silent longer than this is replaced
	tick       time.Duration // watchdog period
	now        func() time.Time
	log        *slog.Logger
	onResync   func()

	running atomic.Bool
	// closed ends when Close is called.
	closed      context.Context
	markClosed  context.CancelFunc
	closedTwice atomic.Bool

	// Read lock-free, by Fresh and State.
	fresh atomic.Bool
	// syncedOnce: Fresh has been true at least once.
	syncedOnce atomic.Bool
	connected  atomic.Bool
	synced     atomic.Bool
	// lastHeard is when a heartbeat was last applied, as nanoseconds since
	// base plus one (0: never). Durations from base use the monotonic
	// clock, so a wall-clock step cannot stretch the staleness bound.
	lastHeard  atomic.Int64
	base       time.Time
	watermark  atomic.Int64
	reconnects atomic.Uint64
	applied    atomic.Uint64
	nacks      atomic.Uint64

	// mu orders the changes of fresh between the watchdog and the stream
	// (reads of fresh take no lock), and guards the fields below.
	mu sync.Mutex
	// lapsed: Fresh turned false since the last sync, so the next sync
	// calls onResync.
	lapsed bool
	// lastRecv is when the current stream last received a response (or
	// opened); cancelStream ends it. Both are for the idle check.
	lastRecv     time.Time
	cancelStream context.CancelFunc

	// versions maps the name of every key resource held to its version.
	// It outlives streams and is owned by Run's goroutine.
	versions map[string]string
}

// New returns a Client that feeds a, on o.Conn or on a connection to
// o.Addr. It does not connect: Run does. A nil Applier, neither Conn nor
// Addr (or Conn with Addr, Token or DialOptions), a negative duration or
// MinBackoff above MaxBackoff is ErrInvalidArgument.
//
// A connection the Client dials is plaintext; the sidecar shares its
// upstream connection instead (Options.Conn), TLS or mTLS when
// proxy.upstream_tls says so. A plaintext connection is for a control plane
// on loopback or behind a mesh that encrypts pod-to-pod traffic; the bearer
// token is only as secret as that path.
func New(a Applier, o Options) (*Client, error) {
	switch {
	case a == nil:
		return nil, credential.Invalid("invalidation: an applier is required")
	case o.Conn == nil && o.Addr == "":
		return nil, credential.Invalid("invalidation: the control plane address is required")
	case o.Conn != nil && (o.Addr != "" || o.Token != "" || len(o.DialOptions) > 0):
		return nil, credential.Invalid("invalidation: a shared connection takes no address, token or dial options")
	case o.MinBackoff < 0 || o.MaxBackoff < 0 || o.MaxStaleness < 0:
		return nil, credential.Invalid("invalidation: durations must not be negative")
	}
	c := &Client{
		applier:    a,
		minBackoff: orDefault(o.MinBackoff, DefaultMinBackoff),
		maxBackoff: orDefault(o.MaxBackoff, DefaultMaxBackoff),
		maxStale:   orDefault(o.MaxStaleness, DefaultMaxStaleness),
		now:        o.Now,
		log:        o.Logger,
		versions:   map[string]string{},
	}
	if c.minBackoff > c.maxBackoff {
		return nil, credential.Invalid("invalidation: min backoff must not exceed max backoff")
	}
	c.idle = max(c.maxStale/2, minIdle)
	c.tick = min(max(c.maxStale/10, time.Millisecond), time.Second)
	if c.now == nil {
		c.now = time.Now
	}
	c.base = c.now()
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	id := o.NodeID
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			host = NodeCluster
		}
		id = host + "-" + strconv.Itoa(os.Getpid())
	}
	c.node = &corev3.Node{Id: id, Cluster: NodeCluster}

	c.closed, c.markClosed = context.WithCancel(context.Background())
	if o.Conn != nil {
		c.shared, _ = o.Conn.(interface{ GetState() connectivity.State })
		c.ads = discoveryv3.NewAggregatedDiscoveryServiceClient(o.Conn)
		return c, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect within about a second of the server's return, as the
		// sidecar's shared connection does (sidecar/upstream), not after
		// gRPC's default backoff of up to 120s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 3 * time.Second,
		}),
	}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{md: map[string]string{"authorization": "Bearer " + o.Token}}))
	}
	opts = append(opts, o.DialOptions...)
	conn, err := grpc.NewClient(o.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("invalidation: %w: %w", credential.ErrInvalidArgument, err)
	}
	c.conn = conn
	c.ads = discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	return c, nil
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// bearer sends the sidecar's token. The map is shared by all calls; gRPC
// only reads it.
type bearer struct{ md map[string]string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return b.md, nil
}

// RequireTransportSecurity is false: the Client dials only plaintext (see
// New).
func (bearer) RequireTransportSecurity() bool { return false }

// OnResync sets f to be called when the client syncs again after Fresh had
// turned false: on a new stream after an outage, or on the same stream after
// a silence. It is called after the response's invalidations are applied
// and before Fresh turns true, so the sidecar can flush its caches before
// it trusts them again. It is not called on the first sync. Set it before
// Run; it must not be called concurrently with Run.
func (c *Client) OnResync(f func()) { c.onResync = f }

// Fresh reports whether cached verdicts may be trusted: the client has
// synced (on the current or a previous stream) and has heard from the
// server within MaxStaleness, while Run runs. It reads one atomic and no
// clock, so it is cheap enough for every cache hit; the watchdog that
// clears it checks every MaxStaleness/10 (between 1ms and 1s), so Fresh may
// turn false up to that much after the bound.
func (c *Client) Fresh() bool { return c.fresh.Load() }

// SyncedOnce reports whether the client has ever synced (Fresh has been
// true at least once), for the sidecar's readiness: a sidecar that has
// heard the control plane once has caches worth serving from. It never
// turns false again.
func (c *Client) SyncedOnce() bool { return c.syncedOnce.Load() }

// Ready reports Fresh, for the sidecar's readiness probe.
func (c *Client) Ready() bool { return c.Fresh() }

// State returns a snapshot of the client. Its fields are read one by one,
// not as one atomic whole.
func (c *Client) State() State {
	s := State{
		Connected:  c.connected.Load(),
		Synced:     c.synced.Load(),
		Watermark:  c.watermark.Load(),
		Reconnects: c.reconnects.Load(),
		Applied:    c.applied.Load(),
		NACKs:      c.nacks.Load(),
	}
	if n := c.lastHeard.Load(); n != 0 {
		s.LastHeard = c.base.Add(time.Duration(n - 1))
	}
	return s
}

// Close stops the client and closes the connection it dialed (a shared one
// stays open). A running Run then returns an error wrapping ErrUnavailable;
// so does a later Run. A second Close returns an error.
func (c *Client) Close() error {
	if c.closedTwice.Swap(true) {
		return errors.New("invalidation: client already closed")
	}
	c.markClosed()
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

// isClosed reports whether the client, or the connection it streams on,
// is closed.
func (c *Client) isClosed() bool {
	switch {
	case c.closed.Err() != nil:
		return true
	case c.conn != nil:
		return c.conn.GetState() == connectivity.Shutdown
	case c.shared != nil:
		return c.shared.GetState() == connectivity.Shutdown
	}
	return false
}

var errClosed = fmt.Errorf("invalidation: client closed: %w", credential.ErrUnavailable)

// Run follows the stream until ctx ends, reconnecting as needed, and returns
// nil then. It returns an error only if the client is closed (wrapping
// ErrUnavailable) or Run is already running (ErrInvalidArgument). Fresh is
// false once Run has returned.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return credential.Invalid("invalidation: Run is already running")
	}
	defer c.running.Store(false)
	if c.isClosed() {
		return errClosed
	}
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(c.closed, cancel)()
	var wg sync.WaitGroup
	wg.Go(func() { c.watchdog(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		c.stop()
	}()

	attempt := 0
	for {
		synced, err := c.stream(ctx)
		if outer.Err() != nil {
			return nil
		}
		if c.isClosed() {
			return errClosed
		}
		if synced {
			attempt = 0
		}
		delay := c.backoff(attempt)
		attempt++
		c.log.Warn("invalidation stream ended; reconnecting", "error", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if outer.Err() == nil {
				return errClosed // ctx ends early only on Close
			}
			return nil
		case <-t.C:
		}
		c.reconnects.Add(1)
	}
}

// stop clears freshness when Run returns: nobody hears the server any more.
func (c *Client) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fresh.Load() {
		c.fresh.Store(false)
		c.lapsed = true
	}
}

// backoff returns the delay before a reconnection after attempt failed
// streams in a row: the bound doubles from minBackoff up to maxBackoff, and
// the delay is drawn from [bound/2, bound] so sidecars restarted together
// do not reconnect together.
func (c *Client) backoff(attempt int) time.Duration {
	bound := c.maxBackoff
	if attempt < 32 {
		bound = min(c.minBackoff<<attempt, c.maxBackoff)
	}
	if bound <= 0 {
		return 0
	}
	return bound/2 + rand.N(bound/2+1)
}

// watchdog clears Fresh when the server has been silent for maxStale, and
// ends a stream silent for idle, until ctx ends.
func (c *Client) watchdog(ctx context.Context) {
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.check()
		}
	}
}

func (c *Client) check() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fresh.Load() && c.sinceBase(now)-c.lastHeard.Load() > int64(c.maxStale) {
		c.fresh.Store(false)
		c.lapsed = true
		c.log.Warn("nothing heard from the control plane within the staleness bound; cached verdicts are no longer fresh",
			"max_staleness", c.maxStale)
	}
	if c.cancelStream != nil && now.Sub(c.lastRecv) > c.idle {
		c.log.Warn("invalidation stream silent; reconnecting", "silent_for", now.Sub(c.lastRecv))
		c.cancelStream()
		c.cancelStream = nil
	}
}

// stream runs one stream until it fails. It reports whether the stream
// synced.
func (c *Client) stream(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.lastRecv = c.now()
	c.cancelStream = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancelStream = nil
		c.mu.Unlock()
		c.connected.Store(false)
		c.synced.Store(false)
	}()

	// The size bound is a call option, so that it holds on a shared
	// connection too.
	s, err := c.ads.DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(maxRecvMsgSize))
	if err != nil {
		return false, err
	}
	// An empty resource_names_subscribe on the first request is the
	// wildcard subscription of the delta protocol. The heartbeat is never
	// listed as held, so the server answers at once with at least it.
	err = s.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:                    c.node,
		TypeUrl:                 TypeURL,
		InitialResourceVersions: maps.Clone(c.versions),
	})
	if err != nil {
		return false, recvErr(s, err)
	}
	st := &streamState{rejected: map[string]struct{}{}}
	for {
		resp, err := s.Recv()
		if err != nil {
			return st.synced, err
		}
		c.connected.Store(true)
		c.mu.Lock()
		c.lastRecv = c.now()
		c.mu.Unlock()
		if err := s.Send(c.handle(resp, st)); err != nil {
			return st.synced, recvErr(s, err)
		}
	}
}

// recvErr returns the stream's status after a failed Send: Send reports
// only io.EOF, the status comes from Recv.
func recvErr(s grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse], err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if _, rerr := s.Recv(); rerr != nil {
			return rerr
		}
	}
}

// sinceBase is t as nanoseconds since base plus one, the form of lastHeard.
func (c *Client) sinceBase(t time.Time) int64 { return int64(t.Sub(c.base)) + 1 }
