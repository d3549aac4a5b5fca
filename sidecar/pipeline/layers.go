package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/cache/memory"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// query is one lookup travelling down the chain.
type query struct {
	p   credential.Presented
	key string // cacheKey(p)
	now time.Time
	// source is set by the layer that answered.
	source extauthz.CacheStatus
	// noCache skips cache reads (the invalidation stream is not current);
	// answers are still written.
	noCache bool
	// stale is the entry L1 holds past its freshness, if any: the answer
	// should the upstream be late or down.
	stale *Entry
	// flight is the shared call this lookup runs in, below flightLayer.
	flight *flight
}

// layer answers a query from what it holds or asks the next layer. It
// returns a non-nil Entry, or an error when no verdict can be had (the
// upstream is down and nothing usable is cached).
type layer interface {
	lookup(ctx context.Context, q *query) (*Entry, error)
}

// keepable reports whether e is worth storing at now.
func keepable(e *Entry, now time.Time) bool { return e.Keep.After(now) }

// memoryLayer is L1: the in-process cache, which also keeps entries past
// their TTL for stale-if-error.
type memoryLayer struct {
	c     *memory.Cache[*Entry]
	next  layer
	stats *counters
	inv   *invalidations
}

func (l *memoryLayer) lookup(ctx context.Context, q *query) (*Entry, error) {
	var (
		old *Entry
		ok  bool
	)
	if !q.noCache {
		old, ok = l.c.Get(q.key)
		ok = ok && !l.inv.stale(old)
	}
	if ok && q.now.Before(old.Fresh) {
		l.stats.l1Hits.Add(1)
		q.source = extauthz.CacheHit
		return old, nil
	}
	l.stats.l1Misses.Add(1)
	if ok {
		q.stale = old
	}
	e, err := l.next.lookup(ctx, q)
	if err != nil {
		// Checked again: the stream may have delivered an invalidation of
		// this key, or gone stale, while the upstream call was failing.
		if ok && q.now.Before(old.Keep) && credential.IsOutage(err) && !l.inv.stale(old) && l.inv.usable() {
			l.stats.staleServed.Add(1)
			q.source = extauthz.CacheStale
			return old, nil
		}
		return nil, err
	}
	if e != old && keepable(e, q.now) {
		l.c.Set(q.key, e, e.cost(), e.Keep.Sub(q.now))
	}
	return e, nil
}

// sharedLayer is L2: the shared cache. Its failures are misses: a dead Redis
// costs latency, never an answer. What it reads there is trusted only once
// the sealer has authenticated it (see sealer): an entry that fails to open
// is counted and treated as a miss, never as a verdict.
type sharedLayer struct {
	life  lifetimes
	store cache.Store
	seal  *sealer
	next  layer
	stats *counters
	log   *slog.Logger
	warn  rateGate
	inv   *invalidations
}

func (l *sharedLayer) lookup(ctx context.Context, q *query) (*Entry, error) {
	var (
		old *Entry
		b   []byte
		ok  bool
		err error
	)
	key := l.seal.key(q.key)
	if !q.noCache {
		b, ok, err = l.store.Get(ctx, key)
	}
	switch {
	case q.noCache:
	case err != nil:
		l.stats.l2Errors.Add(1)
		l.log.Debug("shared cache unavailable", slog.Any("error", err))
	case ok:
		plain, err := l.seal.open(key, b)
		if err != nil {
			l.stats.l2Rejected.Add(1)
			if l.warn.allow(time.Now()) {
				l.log.Warn("the shared cache holds an entry that is not sealed with proxy.cache.redis.secret for its key: ignored (written without the secret, altered, or moved from another key)")
			}
			break
		}
		if e, ok := decodeEntry(plain); ok && !l.inv.stale(e) {
			l.life.bound(e, q.now)
			if q.now.Before(e.Fresh) {
				l.stats.l2Hits.Add(1)
				q.source = extauthz.CacheHit
				return e, nil
			}
			old = e
			if q.flight != nil {
				q.flight.offer(e)
			}
		}
		l.stats.l2Misses.Add(1)
	default:
		l.stats.l2Misses.Add(1)
	}
	e, err := l.next.lookup(ctx, q)
	if err != nil {
		if old != nil && q.now.Before(old.Keep) && credential.IsOutage(err) && !l.inv.stale(old) && l.inv.usable() {
			l.stats.staleServed.Add(1)
			q.source = extauthz.CacheStale
			return old, nil
		}
		return nil, err
	}
	if keepable(e, q.now) {
		if b, err := encodeEntry(e); err == nil {
			if err := l.store.Set(ctx, key, l.seal.seal(key, b), e.Keep.Sub(q.now)); err != nil {
				l.stats.l2Errors.Add(1)
			}
		}
	}
	return e, nil
}

// rateGate lets an event through at most once per minute.
type rateGate struct{ last atomic.Int64 }

func (g *rateGate) allow(now time.Time) bool {
	last := g.last.Load()
	return now.UnixNano()-last >= int64(time.Minute) && g.last.CompareAndSwap(last, now.UnixNano())
}

// flightLayer lets one upstream call per cache key be in flight; concurrent
// lookups of the same credential share its answer. The shared call runs
// detached from any one caller's cancellation (the upstream client bounds
// it), so a caller that gives up does not fail the others.
//
// The flight key carries the invalidation watermark: a lookup that starts
// after a change was heard never joins a call that started before it. It
// also carries noCache, so a lookup made while the stream is not current
// never takes the shared-cache hit of a call made while it was.
//
// A hung upstream (or a hung database behind it) answers neither yes nor no
// until the upstream timeout and its retries have passed, far beyond what
// Envoy waits for a check (250ms by default). So once a call has taken
// longer than budget, its callers are answered from a usable stale entry
// when there is one (the caller's own from L1, or the one L2 offered to the
// call), under the same conditions as stale-if-error, checked at that
// moment: within the entry's Keep, not invalidated, the stream current. A
// caller with no usable entry is denied then with errUndecided
// (ErrUnavailable: the same fail-closed answer as a control plane that is
// down), so that Envoy gets the sidecar's deny rather than its own timeout.
// Either way the call goes on in the background, and its answer refreshes
// both caches.
//
// At most max calls are in flight: the calls of a stalled upstream last the
// upstream timeout and its retries each, and checks of ever new credentials
// would otherwise pile them up without bound. A miss past the cap is denied
// at once.
type flightLayer struct {
	mu     sync.Mutex
	calls  map[string]*flight // guarded by mu
	max    int                // len(calls) never exceeds it
	next   layer
	inv    *invalidations
	budget time.Duration
	now    func() time.Time
	stats  *counters
	// refresh stores in L1 an answer that some caller did not wait for
	// (that caller's memoryLayer would have stored it).
	refresh func(key string, e *Entry)
}

// flight is one shared call.
type flight struct {
	done   chan struct{} // closed once e, err and source are set
	e      *Entry
	err    error
	source extauthz.CacheStatus

	late    chan struct{} // closed once the call has taken budget
	offered chan struct{} // closed once stale is set
	stale   atomic.Pointer[Entry]
	// detached is set by a caller answered before the call finished.
	detached atomic.Bool
}

// offer makes e, a stale entry found on the way down (in L2), available to
// the callers of f should the call be late. Only the first offer counts.
func (f *flight) offer(e *Entry) {
	if f.stale.CompareAndSwap(nil, e) {
		close(f.offered)
	}
}

var (
	errCheckTimeout = &credential.Error{Kind: credential.ErrDeadlineExceeded, Reason: "GATEWAY_TIMEOUT", Message: "The verification did not finish in time."}
	// errUndecided answers a check the upstream has not decided within
	// the check timeout, and errBusy a miss past the cap of calls in
	// flight: outages, denied like a control plane that is down.
	errUndecided = fmt.Errorf("the control plane did not answer within the check timeout: %w", credential.ErrUnavailable)
	errBusy      = fmt.Errorf("too many control plane calls in flight: %w", credential.ErrUnavailable)
)

func (l *flightLayer) lookup(ctx context.Context, q *query) (*Entry, error) {
	var w [9]byte
	binary.BigEndian.PutUint64(w[:], uint64(l.inv.watermark.Load()))
	if q.noCache {
		// A lookup that may not read caches never joins one that may: the
		// call reads the shared cache for the caller that started it.
		w[8] = 1
	}
	key := q.key + string(w[:])
	l.mu.Lock()
	f, joined := l.calls[key]
	if !joined && len(l.calls) >= l.max {
		l.mu.Unlock()
		l.stats.flightsRefused.Add(1)
		return nil, errBusy
	}
	if !joined {
		f = &flight{done: make(chan struct{}), late: make(chan struct{}), offered: make(chan struct{})}
		l.calls[key] = f
	}
	l.mu.Unlock()
	if !joined {
		go l.run(context.WithoutCancel(ctx), key, f, *q)
	}
	select {
	case <-f.done:
		return f.answer(q)
	case <-ctx.Done():
		return nil, errCheckTimeout
	case <-f.late:
	}
	// The budget has passed: a usable stale entry now, or a deny.
	e := l.usableStale(q, f)
	// Set before looking at done: either run sees it and refreshes L1, or
	// this caller sees the answer.
	f.detached.Store(true)
	select {
	case <-f.done:
		return f.answer(q)
	default:
	}
	if e == nil {
		l.stats.undecided.Add(1)
		return nil, errUndecided
	}
	l.stats.staleServed.Add(1)
	q.source = extauthz.CacheStale
	return e, nil
}

func (f *flight) answer(q *query) (*Entry, error) {
	if f.err != nil {
		return nil, f.err
	}
	q.source = f.source
	return f.e, nil
}

// usableStale returns the stale entry q may be answered with now, or nil.
func (l *flightLayer) usableStale(q *query, f *flight) *Entry {
	if q.noCache {
		return nil
	}
	var shared *Entry
	select {
	case <-f.offered:
		shared = f.stale.Load()
	default:
	}
	now := l.now()
	for _, e := range [2]*Entry{q.stale, shared} {
		if e != nil && now.Before(e.Keep) && !l.inv.stale(e) && l.inv.usable() {
			return e
		}
	}
	return nil
}

// run makes the shared call f.
func (l *flightLayer) run(ctx context.Context, key string, f *flight, q query) {
	t := time.AfterFunc(l.budget, func() { close(f.late) })
	q.flight = f
	e, err := l.next.lookup(ctx, &q)
	t.Stop()
	f.e, f.err, f.source = e, err, q.source
	l.mu.Lock()
	delete(l.calls, key)
	l.mu.Unlock()
	close(f.done)
	if err == nil && f.detached.Load() {
		l.refresh(q.key, e)
	}
}

// upstreamLayer asks the control plane.
type upstreamLayer struct {
	up    Upstream
	life  lifetimes
	stats *counters
	inv   *invalidations
}

func (l *upstreamLayer) lookup(ctx context.Context, q *query) (*Entry, error) {
	l.stats.upstreamCalls.Add(1)
	// The tag is taken before the call: the answer reflects at least every
	// change up to it.
	tag := l.inv.watermark.Load()
	res, err := l.up.Verify(ctx, q.p)
	q.source = extauthz.CacheMiss
	if err != nil && !credential.IsVerdict(err) {
		l.stats.upstreamErrors.Add(1)
		return nil, err
	}
	if e, ok := l.life.entryFor(res, err, q.now); ok {
		e.Tag = tag
		return e, nil
	}
	// Not cacheable (rate limited, TTL 0): answer it once.
	return &Entry{Result: res, Err: err, Fresh: q.now, Keep: q.now}, nil
}

// jwtLayer verifies derived JWTs locally against the control plane's JWKS,
// under the control plane's token policy (issuers, retired issuers with their
// expiry, clock skew) evaluated at the instant of the request. Until the
// policy is known, JWTs go on down the chain to the control plane, as every
// other credential does: the sidecar never guesses which issuers to accept.
// Its verdicts are kept in L1 (above it) until the token stops being
// accepted; check re-applies the policy to them on every hit.
type jwtLayer struct {
	keys  *jwks
	life  lifetimes
	next  layer
	stats *counters
	inv   *invalidations
}

func (l *jwtLayer) lookup(ctx context.Context, q *query) (*Entry, error) {
	if !token.LooksJWT(q.p.Credential) {
		return l.next.lookup(ctx, q)
	}
	ks, pol, err := l.keys.get(ctx)
	if pol == nil {
		// No policy (yet): the control plane decides.
		return l.next.lookup(ctx, q)
	}
	l.stats.jwtLocal.Add(1)
	q.source = extauthz.CacheMiss
	if err != nil {
		return nil, err
	}
	o := pol.Options(q.now, q.p) // q.p.DeferIPCheck: check enforces the CIDRs
	c, err := token.VerifyJWT(q.p.Credential, ks, o)
	if errors.Is(err, token.ErrUnknownKID) {
		// Perhaps the control plane rotated: refetch once and retry.
		if ks2, rerr := l.keys.refetch(ctx, ks); rerr == nil && ks2 != ks {
			c, err = token.VerifyJWT(q.p.Credential, ks2, o)
		}
	}
	if err != nil && !credential.IsVerdict(err) {
		return nil, err
	}
	res := c.Result(credential.TypeJWT)
	if err == nil {
		// Valid until the policy stops accepting it (its expiry plus the
		// skew, or its retired issuer's expiry); the verdict depends on
		// nothing else that can change before then except the signing keys.
		until := pol.Until(c.Issuer, c.Expiry)
		e := &Entry{Result: res, Fresh: until, Keep: until, Tag: l.inv.watermark.Load(), kid: c.SigningKeyID}
		return e, nil
	}
	if e, ok := l.life.entryFor(res, err, q.now); ok {
		e.Tag = l.inv.watermark.Load()
		return e, nil
	}
	return &Entry{Result: res, Err: err, Fresh: q.now, Keep: q.now}, nil
}

// jwks holds the control plane's public signing keys and its token policy,
// fetched together and refreshed on the same schedule. Readers never block:
// both are swapped atomically; fetches are serialised by mu.
type jwks struct {
	up      Upstream
	now     func() time.Time
	log     *slog.Logger
	refresh time.Duration

	set     atomic.Pointer[token.KeySet]
	pol     atomic.Pointer[token.Policy]
	mu      sync.Mutex
	fetched time.Time // guarded by mu
	// polFailing is set while token policy fetches fail; guarded by mu.
	polFailing bool
}

// minRefetch bounds refetches triggered by unknown key IDs (or a missing
// policy), so a stream of forged tokens cannot turn into a stream of upstream
// calls.
const minRefetch = time.Second

// policy returns the token policy, nil until one was fetched.
func (j *jwks) policy() *token.Policy { return j.pol.Load() }

// get returns the key set and the policy, fetching them when there is no key
// set yet, or no policy and the last fetch is minRefetch old. The policy is
// nil (whatever the error) while the control plane has not given one.
func (j *jwks) get(ctx context.Context) (*token.KeySet, *token.Policy, error) {
	ks, pol := j.set.Load(), j.pol.Load()
	if ks != nil && pol != nil {
		return ks, pol, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	ks, pol = j.set.Load(), j.pol.Load()
	if ks != nil && (pol != nil || j.now().Sub(j.fetched) < minRefetch) {
		return ks, pol, nil
	}
	ks, err := j.fetchLocked(ctx)
	return ks, j.pol.Load(), err
}

// refetch fetches again unless another fetch replaced seen already or one
// happened within minRefetch.
func (j *jwks) refetch(ctx context.Context, seen *token.KeySet) (*token.KeySet, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if ks := j.set.Load(); ks != seen || j.now().Sub(j.fetched) < minRefetch {
		return ks, nil
	}
	return j.fetchLocked(ctx)
}

// fetchLocked fetches the keys and the policy; on failure it keeps what it
// has of each. The error is the key set's.
func (j *jwks) fetchLocked(ctx context.Context) (*token.KeySet, error) {
	// Failed attempts count too, so that forged kids cannot turn an
	// unreachable JWKS endpoint into a stream of upstream calls.
	j.fetched = j.now()
	if pol, err := j.up.TokenPolicy(ctx); err == nil {
		j.pol.Store(pol)
		j.polFailing = false
	} else if !j.polFailing {
		// Once per run of failures: with JWTs flowing and no policy, this
		// is retried every minRefetch.
		j.polFailing = true
		j.log.Warn("fetching the token policy failed; derived JWTs are verified upstream until it succeeds", slog.Any("error", err))
	}
	old := j.set.Load()
	b, err := j.up.JWKS(ctx)
	if err != nil {
		if old != nil {
			return old, nil
		}
		return nil, err
	}
	ks, err := token.ParsePublicJWKS(b)
	if err != nil {
		j.log.Error("the control plane sent an unusable JWKS", slog.Any("error", err))
		if old != nil {
			return old, nil
		}
		return nil, &credential.Error{Kind: credential.ErrUnavailable, Reason: "BAD_UPSTREAM_RESPONSE", Message: "The signing keys are not available."}
	}
	j.set.Store(ks)
	return ks, nil
}

func (j *jwks) run(ctx context.Context) error {
	t := time.NewTicker(j.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			j.mu.Lock()
			_, err := j.fetchLocked(ctx)
			j.mu.Unlock()
			if err != nil {
				j.log.Warn("refreshing the signing keys failed", slog.Any("error", err))
			}
		}
	}
}
