package xds

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
)

// Options configures a Server. The zero value is usable: every field has a
// default.
type Options struct {
	// Retention is how long an invalidation resource is kept after it was
	// published, measured by Now. It must exceed every sidecar's cache TTL
	// plus its stale-if-error bound, or a sidecar that reconnects after a
	// long outage could miss an invalidation it still needed. Default 10m.
	Retention time.Duration
	// HeartbeatInterval is how often Run refreshes the heartbeat, and so the
	// longest a connected sidecar goes without a response. Run sweeps
	// expired invalidations at the same pace. Default 1s.
	HeartbeatInterval time.Duration
	// Now is the clock for publish times, retention and the heartbeat time.
	// Default time.Now.
	Now func() time.Time
	// Logger receives NACKs (warn) and go-control-plane's own messages.
	// Default: discard.
	Logger *slog.Logger
	// Envoy, when set, also serves every Envoy the listener and clusters of
	// EnvoyResources (type URLs resource.ListenerType and
	// resource.ClusterType) on the same streams. Nil serves none: a stream
	// that asks for either type fails with Unimplemented, as for any type
	// not served, so a misdirected Envoy logs why rather than run without
	// listeners. The options are read once, by New.
	Envoy *EnvoyOptions
	// Live, when set, gates the heartbeat: while it reports false (the
	// outbox tailer feeding Publish cannot read the database), the
	// heartbeat is not refreshed, so sidecars stop hearing from this server
	// and, past their staleness bound, stop trusting their caches instead
	// of missing revocations made through other replicas.
	Live func() bool
}

const (
	defaultRetention         = 10 * time.Minute
	defaultHeartbeatInterval = time.Second
)

// Server holds the invalidation resources and serves them on the aggregated
// discovery service. Create it with New; it is safe for concurrent use.
type Server struct {
	retention time.Duration
	interval  time.Duration
	now       func() time.Time
	log       *slog.Logger

	cache *cachev3.LinearCache
	envoy cachev3.SnapshotCache // nil without Options.Envoy
	ads   *ads
	// stop ends every open stream; Run calls it when it returns, so a
	// graceful gRPC shutdown does not wait on streams that never end.
	stop context.CancelFunc

	// mu serialises the cache updates of Publish and tick, so that the
	// watermark, the entries and the cache move together.
	mu        sync.Mutex
	entries   map[string]entry
	queue     []queued // publish order: the retention sweep pops its front
	gen       uint64
	watermark int64
	forgotten int64     // the highest seq of an invalidation dropped by retention
	beat      time.Time // the heartbeat's time, strictly increasing
	live      func() bool
	withdrawn bool // the heartbeat is withdrawn because live reported false

	// Read without mu, by accessors, metrics and the stream callbacks.
	watermarkSeen atomic.Int64
	resources     atomic.Int64
	streams       atomic.Int64

	nodesMu sync.Mutex
	nodes   map[streamKey]string

	published prometheus.Counter
	nacks     prometheus.Counter
}

// entry is the server's record of one invalidation resource.
type entry struct {
	inv *sidecarv1.Invalidation
	at  time.Time // publish time, by Now
	gen uint64    // tells a live entry from a replaced one in the queue
}

type queued struct {
	name string
	at   time.Time
	gen  uint64
}

// streamKey identifies a stream: the delta and the state-of-the-world
// servers number their streams independently.
type streamKey struct {
	delta bool
	id    int64
}

// New returns a Server holding only the heartbeat (seq 0), and the Envoy
// resources when Options.Envoy is set. It fails when a duration option is
// negative or when EnvoyResources rejects Options.Envoy.
func New(o Options) (*Server, error) {
	if o.Retention < 0 || o.HeartbeatInterval < 0 {
		return nil, errors.New("xds: retention and heartbeat interval must not be negative")
	}
	if o.Retention == 0 {
		o.Retention = defaultRetention
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = defaultHeartbeatInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		live:      o.Live,
		retention: o.Retention,
		interval:  o.HeartbeatInterval,
		now:       o.Now,
		log:       o.Logger,
		entries:   make(map[string]entry),
		nodes:     make(map[streamKey]string),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "talos_xds_published_total",
			Help: "Invalidations published to sidecars (created-key events are not published).",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "talos_xds_nacks_total",
			Help: "Responses a sidecar rejected (requests carrying error_detail).",
		}),
	}
	s.beat = s.now()
	logger := cpLogger{l: s.log}
	// The prefix only shows in state-of-the-world version_info; it keeps a
	// client that reconnects to another replica (or to this one after a
	// restart) from mistaking a version it knew for the current one. Delta
	// resource versions are content hashes and need no prefix.
	s.cache = cachev3.NewLinearCache(InvalidationType,
		cachev3.WithVersionPrefix(rand.Text()[:8]+"-"),
		cachev3.WithLogger(logger),
		cachev3.WithInitialResources(map[string]types.Resource{HeartbeatName: newHeartbeat(0, 0, s.beat)}),
	)
	caches := typeMux{InvalidationType: s.cache}
	if o.Envoy != nil {
		envoy, err := newEnvoyCache(*o.Envoy, logger)
		if err != nil {
			return nil, err
		}
		s.envoy = envoy
		caches[resource.ListenerType] = envoy
		caches[resource.ClusterType] = envoy
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	cb := callbacks{s: s}
	s.ads = &ads{
		delta: deltav3.NewServer(ctx, caches, cb, deltav3.WithLogger(logger)),
		sotw:  sotwv3.NewServer(ctx, caches, cb, sotwv3.WithLogger(logger)),
	}
	return s, nil
}

// Register registers the aggregated discovery service (delta and
// state-of-the-world) on g. Streams asking for a type URL other than
// InvalidationType (or, with Options.Envoy, the Envoy listener and cluster
// types) fail with Unimplemented.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.ads)
}

// Publish hands the server a batch of committed events, in sequence order.
// Every event but EventCreated (a new key cannot turn an allow into a deny)
// becomes or replaces the resource of its key; an event older (by seq) than
// the one a key already holds is dropped, and so is an event without a key
// ID. The heartbeat takes the highest seq seen, created events included, in
// the same cache update, so one response carries both. Publish is safe for
// concurrent use, but the watermark only means "everything up to here" when
// batches arrive in sequence order, as the outbox tailer hands them over.
// Publish keeps no reference to events.
func (s *Server) Publish(events []credential.Event) {
	if len(events) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	update := make(map[string]types.Resource, len(events)+1)
	for _, e := range events {
		s.watermark = max(s.watermark, e.Seq)
		if e.Type == credential.EventCreated {
			continue
		}
		if e.KeyID == "" {
			s.log.Warn("xds: event without a key id not published", slog.Int64("seq", e.Seq))
			continue
		}
		typ, known := invalidationType(e.Type)
		if !known {
			s.log.Warn("xds: unknown event type published as updated",
				slog.Int64("seq", e.Seq), slog.Int("type", int(e.Type)))
		}
		name := resourceName(e.Tenant, e.KeyID)
		if old, ok := s.entries[name]; ok && e.Seq < old.inv.GetSeq() {
			continue
		}
		inv := newInvalidation(e, typ)
		s.gen++
		s.entries[name] = entry{inv: inv, at: now, gen: s.gen}
		s.queue = append(s.queue, queued{name: name, at: now, gen: s.gen})
		update[name] = inv
	}
	update[HeartbeatName] = s.heartbeat(now)
	s.apply(update, nil)
	s.published.Add(float64(len(update) - 1))
}

// Run refreshes the heartbeat and sweeps expired invalidations every
// HeartbeatInterval until ctx ends, then ends every open stream and returns
// nil. Call it once; the server serves no stream after it returns.
func (s *Server) Run(ctx context.Context) error {
	defer s.stop()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.tick()
		}
	}
}

// tick removes the invalidations older than the retention and refreshes the
// heartbeat, in one cache update.
func (s *Server) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var expired []string
	i := 0
	for ; i < len(s.queue); i++ {
		q := s.queue[i]
		if now.Sub(q.at) <= s.retention {
			// Publish times only grow (unless Now steps back, which
			// only delays a removal), so the rest is younger.
			break
		}
		if e, ok := s.entries[q.name]; ok && e.gen == q.gen {
			delete(s.entries, q.name)
			expired = append(expired, q.name)
			s.forgotten = max(s.forgotten, e.inv.GetSeq())
		}
	}
	s.queue = s.queue[i:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	if s.live != nil && !s.live() {
		// Withdraw the heartbeat: clients count only responses that carry
		// one, so neither open nor reconnecting streams look current.
		if !s.withdrawn {
			s.withdrawn = true
			s.log.Warn("xds: the outbox cannot be read; heartbeat withdrawn so that sidecars stop trusting their caches")
			expired = append(expired, HeartbeatName)
		}
		if len(expired) > 0 {
			s.apply(nil, expired)
		}
		return
	}
	if s.withdrawn {
		s.withdrawn = false
		s.log.Info("xds: the outbox is readable again; heartbeat restored")
	}
	s.apply(map[string]types.Resource{HeartbeatName: s.heartbeat(now)}, expired)
}

// heartbeat returns a new heartbeat value. Its time strictly increases, so
// every refresh is a new resource version and reaches every client, even
// when the clock has not moved (a fake clock, a coarse one) or stepped back.
// Called with mu held.
func (s *Server) heartbeat(now time.Time) *sidecarv1.Invalidation {
	if !now.After(s.beat) {
		now = s.beat.Add(time.Nanosecond)
	}
	s.beat = now
	s.watermarkSeen.Store(s.watermark)
	return newHeartbeat(s.watermark, s.forgotten, now)
}

// apply makes one cache update. Called with mu held.
func (s *Server) apply(update map[string]types.Resource, remove []string) {
	s.resources.Store(int64(len(s.entries)))
	// LinearCache fails only when it cannot marshal a resource, which an
	// Invalidation always can; log rather than lose the rest of the batch.
	if err := s.cache.UpdateResources(update, remove); err != nil {
		s.log.Error("xds: cache update failed", slog.Any("error", err))
	}
}

// Watermark returns the heartbeat's seq: the highest sequence handed to
// Publish so far.
func (s *Server) Watermark() int64 { return s.watermarkSeen.Load() }

// Streams returns the number of open delta and state-of-the-world streams.
func (s *Server) Streams() int { return int(s.streams.Load()) }

// Resources returns the number of invalidation resources held, not counting
// the heartbeat.
func (s *Server) Resources() int { return int(s.resources.Load()) }
