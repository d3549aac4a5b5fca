// Package pipeline is the sidecar's verification path: a chain of small
// layers behind one interface, each answering from what it holds or asking
// the next one:
//
//	local reject -> L1 (in-process, ristretto) -> derived JWT (local, JWKS)
//	  -> L2 (shared, Redis) -> singleflight -> upstream (control plane)
//
// Whatever answers, the per-request checks run last on the verdict: the key's
// expiry at this instant and its client-IP restriction against this client,
// so one cached verdict serves every client address. Cached allows past their
// TTL are served while the upstream is down, up to the stale-if-error bound;
// credentials nobody has seen are denied (fail closed).
//
// Cache keys are hashes of (tenant, credential, expected audiences): the raw
// credential is never stored and never logged, and the sidecar never holds
// the HMAC secret. In process (L1) the hash is unkeyed; in the shared cache
// (L2), which other machines can read and write, keys are keyed hashes and
// entries are encrypted and authenticated under a secret the sidecars share
// (see sealer).
//
// A check waits for the upstream at most Options.CheckTimeout: then it is
// answered from a stale cached verdict when one is usable, and denied (fail
// closed, as when the control plane is down) otherwise, while the upstream
// call goes on in the background to fill the caches. A hung control plane
// costs that budget once per call, never the upstream timeout and its
// retries, and never more than the proxy in front waits.
package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/cache/memory"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// Upstream is the control plane, asked on a miss.
type Upstream interface {
	// Verify answers a verdict on p, ignoring p.ClientIP: the pipeline
	// enforces the returned AllowedCIDRs itself. Verdicts are
	// *credential.Error values; other errors mean the upstream could not
	// answer.
	Verify(ctx context.Context, p credential.Presented) (credential.Result, error)
	// JWKS returns the control plane's public signing keys (RFC 7517 JSON).
	JWKS(ctx context.Context) ([]byte, error)
	// TokenPolicy returns the control plane's token policy: the issuers and
	// clock skew derived tokens are verified under.
	TokenPolicy(ctx context.Context) (*token.Policy, error)
}

// Options configure a Pipeline.
type Options struct {
	// TTL of a cached allow (capped at the key's expiry) and of a cached
	// final denial (revoked, expired). Default 60s.
	TTL time.Duration
	// NegativeTTL of a cached NOT_FOUND or other denial; 0 disables negative
	// caching.
	NegativeTTL time.Duration
	// StaleIfError is how long past its TTL a cached verdict is served while
	// the upstream is down; 0 disables.
	StaleIfError time.Duration
	// CheckTimeout bounds the wait of one check for the upstream: once it
	// has passed, the check is answered from a usable stale entry (one
	// stale-if-error would serve) when there is one, and otherwise with an
	// ErrUnavailable error (the sidecar's fail-closed deny, never an
	// allow); the upstream call goes on in the background and its answer
	// fills the caches for the next check. Keep it under the time the
	// proxy in front gives a check (Envoy's ext_authz timeout: 250ms by
	// default). Default 200ms.
	CheckTimeout time.Duration
	// MaxFlights caps the upstream calls in flight at once (one per
	// credential being looked up, however many checks wait for it); a miss
	// past the cap is denied at once with ErrUnavailable. It bounds what a
	// stalled control plane makes the sidecar hold. Default 4096.
	MaxFlights int
	// MemoryBytes is the byte budget of the in-process cache. Default 64 MiB.
	MemoryBytes int64
	// Shared is the optional shared cache (Redis); nil for none.
	Shared cache.Store
	// SharedSecret is the secret the sidecars of one shared cache share
	// (and nobody else: not the HMAC secret), at least MinSharedSecret
	// bytes; required with Shared. Keys in the shared cache are keyed
	// hashes under it and entries are sealed with it (see sealer).
	SharedSecret []byte
	// JWKSRefresh is how often the signing keys and the token policy
	// (issuers, clock skew: the control plane's, never configured here) are
	// refetched. Default 5m.
	JWKSRefresh time.Duration
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultMaxFlights is Options.MaxFlights when unset.
const DefaultMaxFlights = 4096

// Pipeline implements extauthz.Authorizer.
type Pipeline struct {
	head  layer
	l1    *memory.Cache[*Entry]
	jwks  *jwks
	now   func() time.Time
	log   *slog.Logger
	stats counters
	inv   invalidations
	// mu orders the background refreshes of L1 (calls that outlived the
	// check that started them) before Close.
	mu     sync.RWMutex
	closed bool // guarded by mu
}

var _ extauthz.Authorizer = (*Pipeline)(nil)

// New builds the chain over up.
func New(up Upstream, o Options) (*Pipeline, error) {
	if up == nil {
		return nil, errors.New("pipeline: an upstream is required")
	}
	if o.TTL <= 0 {
		o.TTL = time.Minute
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 64 << 20
	}
	if o.JWKSRefresh <= 0 {
		o.JWKSRefresh = 5 * time.Minute
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = 200 * time.Millisecond
	}
	if o.MaxFlights <= 0 {
		o.MaxFlights = DefaultMaxFlights
	}
	if o.NegativeTTL < 0 || o.StaleIfError < 0 || o.CheckTimeout < 0 {
		return nil, errors.New("pipeline: negative durations")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l1, err := memory.New[*Entry](memory.Options{MaxBytes: o.MemoryBytes})
	if err != nil {
		return nil, err
	}
	p := &Pipeline{l1: l1, now: o.Now, log: o.Logger}
	life := lifetimes{ttl: o.TTL, negative: o.NegativeTTL, stale: o.StaleIfError}
	p.jwks = &jwks{up: up, now: o.Now, log: o.Logger, refresh: o.JWKSRefresh}
	p.inv.now = o.Now
	p.inv.keep = 2*max(o.TTL, o.NegativeTTL) + o.StaleIfError

	// The shared cache sits inside the flight: concurrent misses of one
	// credential make one Redis round trip, not one each.
	var next layer = &upstreamLayer{up: up, life: life, stats: &p.stats, inv: &p.inv}
	if o.Shared != nil {
		seal, err := newSealer(o.SharedSecret)
		if err != nil {
			l1.Close()
			return nil, err
		}
		next = &sharedLayer{life: life, store: o.Shared, seal: seal, next: next, stats: &p.stats, log: o.Logger, inv: &p.inv}
	}
	next = &flightLayer{
		calls: map[string]*flight{}, max: o.MaxFlights, next: next, inv: &p.inv, budget: o.CheckTimeout, now: o.Now, stats: &p.stats,
		refresh: p.refresh,
	}
	next = &jwtLayer{keys: p.jwks, life: life, next: next, stats: &p.stats, inv: &p.inv}
	p.head = &memoryLayer{c: l1, next: next, stats: &p.stats, inv: &p.inv}
	return p, nil
}

// Run keeps the signing keys fresh and prunes old tombstones until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	go func() {
		t := time.NewTicker(max(p.inv.keep/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.inv.prune()
			}
		}
	}()
	return p.jwks.run(ctx)
}

// Close releases the in-process cache. Call it only once nothing serves
// through the pipeline any more (ristretto panics on a Set after Close).
func (p *Pipeline) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.l1.Close()
	}
}

// refresh stores in L1 the answer of an upstream call that finished after
// the check that started it was answered (from a stale entry). It may run
// after Close, which it must not race with.
func (p *Pipeline) refresh(key string, e *Entry) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if now := p.now(); !p.closed && keepable(e, now) {
		p.l1.Set(key, e, e.cost(), e.Keep.Sub(now))
	}
}

// Authorize decides on one presented credential.
func (p *Pipeline) Authorize(ctx context.Context, pr credential.Presented) extauthz.Verdict {
	if len(pr.Credential) == 0 || len(pr.Credential) > credential.MaxCredentialBytes {
		p.stats.localRejects.Add(1)
		return extauthz.Verdict{Err: credential.ErrKeyFormat}
	}
	if pr.Tenant == "" {
		pr.Tenant = credential.DefaultTenant
	}
	pr.DeferIPCheck = true
	key, now := cacheKey(pr), p.now()
	usable := p.inv.usable()
	// The hit path, inline: no query is built, nothing else is allocated.
	if usable {
		if e, ok := p.l1.Get(key); ok && now.Before(e.Fresh) && !p.inv.stale(e) {
			p.stats.l1Hits.Add(1)
			return extauthz.Verdict{Result: e.Result, Err: check(e, pr.ClientIP, now, p.jwks), Cache: extauthz.CacheHit, Memo: &e.memo}
		}
	}
	// A miss: reject what no upstream could accept before asking anyone (a
	// key that fails this can never have been cached, so hits skip it).
	if err := localReject(pr.Credential); err != nil {
		p.stats.localRejects.Add(1)
		return extauthz.Verdict{Err: err}
	}
	q := &query{p: pr, key: key, now: now, noCache: !usable}
	e, err := p.head.lookup(ctx, q)
	if err != nil {
		return extauthz.Verdict{Err: err, Cache: q.source}
	}
	return extauthz.Verdict{Result: e.Result, Err: check(e, pr.ClientIP, now, p.jwks), Cache: q.source, Memo: &e.memo}
}

// Wait makes preceding in-process cache writes visible; for tests.
func (p *Pipeline) Wait() { p.l1.Wait() }

// localReject rejects what no upstream could accept, without asking it: an
// oversized credential, and an issued-key shape whose checksum fails.
func localReject(c string) error {
	if c == "" || len(c) > credential.MaxCredentialBytes {
		return credential.ErrKeyFormat
	}
	if apikey.LooksIssued(c) {
		if _, err := apikey.Parse(c); err != nil {
			// As the control plane answers it: no lookup, NOT_FOUND.
			return credential.ErrNotFound
		}
	}
	return nil
}

// check applies the per-request checks to a verdict: the key's expiry now and
// the client address against its CIDRs. A derived token's verdict is held to
// the control plane's token policy at now (its issuer still accepted, its
// expiry plus the clock skew), so that a retired issuer expires in cached
// verdicts too; without a policy its expiry applies without skew.
func check(e *Entry, ip netip.Addr, now time.Time, keys *jwks) error {
	if e.Err != nil {
		return e.Err
	}
	r := &e.Result
	if r.Type == credential.TypeJWT || r.Type == credential.TypeMacaroon {
		// A signing key the control plane withdrew (compromised, retired
		// past its tokens) ends the verdicts it verified at the next JWKS
		// refresh, not at each token's expiry.
		if e.kid != "" && !keys.set.Load().Has(e.kid) {
			return token.ErrUnknownKID
		}
		if pol := keys.policy(); pol != nil {
			if err := pol.Recheck(r.Issuer, r.ExpireTime, now); err != nil {
				return err
			}
		} else if !now.Before(r.ExpireTime) {
			return credential.ErrKeyExpired
		}
	} else if !r.ExpireTime.IsZero() && !now.Before(r.ExpireTime) {
		return credential.ErrKeyExpired
	}
	if !credential.IPAllowed(r.AllowedCIDRs, ip) {
		return credential.ErrIPNotAllowed
	}
	return nil
}

// cacheKey hashes (tenant, credential) as apikey.CacheKey does, folding in
// the expected audiences, which change a derived token's verdict.
func cacheKey(p credential.Presented) string {
	k := apikey.CacheKey(p.Tenant, p.Credential)
	if len(p.ExpectedAudiences) > 0 {
		h := sha256.New()
		h.Write(k[:])
		var n [8]byte
		for _, a := range p.ExpectedAudiences {
			binary.BigEndian.PutUint64(n[:], uint64(len(a)))
			h.Write(n[:])
			h.Write([]byte(a))
		}
		h.Sum(k[:0])
	}
	return string(k[:])
}

// Stats are the pipeline's counters since start.
type Stats struct {
	L1Hits, L1Misses, L2Hits, L2Misses, L2Errors uint64
	// L2Rejected counts shared-cache entries that failed authentication.
	L2Rejected                              uint64
	JWTLocal, UpstreamCalls, UpstreamErrors uint64
	StaleServed, LocalRejects               uint64
	// Undecided counts checks denied (fail closed) at the check timeout
	// with no verdict to give; FlightsRefused, misses denied at once
	// because MaxFlights upstream calls were already in flight.
	Undecided, FlightsRefused uint64
}

type counters struct {
	l1Hits, l1Misses, l2Hits, l2Misses, l2Errors atomic.Uint64
	l2Rejected                                   atomic.Uint64
	jwtLocal, upstreamCalls, upstreamErrors      atomic.Uint64
	staleServed, localRejects                    atomic.Uint64
	undecided, flightsRefused                    atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	c := &p.stats
	return Stats{
		L1Hits: c.l1Hits.Load(), L1Misses: c.l1Misses.Load(), L2Hits: c.l2Hits.Load(), L2Misses: c.l2Misses.Load(),
		L2Errors: c.l2Errors.Load(), L2Rejected: c.l2Rejected.Load(), JWTLocal: c.jwtLocal.Load(), UpstreamCalls: c.upstreamCalls.Load(),
		UpstreamErrors: c.upstreamErrors.Load(), StaleServed: c.staleServed.Load(), LocalRejects: c.localRejects.Load(),
		Undecided: c.undecided.Load(), FlightsRefused: c.flightsRefused.Load(),
	}
}

// Register exposes the counters as Prometheus metrics.
func (p *Pipeline) Register(reg prometheus.Registerer) error {
	c := &p.stats
	lookup := func(layer, result string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "talos_proxy_cache_lookups_total", Help: "Sidecar cache lookups by layer and result.",
			ConstLabels: prometheus.Labels{"layer": layer, "result": result},
		}, func() float64 { return float64(v.Load()) })
	}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, col := range []prometheus.Collector{
		lookup("memory", "hit", &c.l1Hits), lookup("memory", "miss", &c.l1Misses),
		lookup("redis", "hit", &c.l2Hits), lookup("redis", "miss", &c.l2Misses), lookup("redis", "error", &c.l2Errors),
		lookup("redis", "rejected", &c.l2Rejected),
		counter("talos_proxy_jwt_local_verifications_total", "Derived JWTs verified locally against the JWKS.", &c.jwtLocal),
		counter("talos_proxy_upstream_calls_total", "Verify calls to the control plane.", &c.upstreamCalls),
		counter("talos_proxy_upstream_errors_total", "Verify calls to the control plane that got no verdict.", &c.upstreamErrors),
		counter("talos_proxy_stale_served_total", "Verdicts served past their TTL because the upstream was down.", &c.staleServed),
		counter("talos_proxy_local_rejects_total", "Credentials rejected without a lookup (malformed).", &c.localRejects),
		counter("talos_proxy_check_timeouts_total", "Checks denied (fail closed) at proxy.check_timeout with no verdict to give.", &c.undecided),
		counter("talos_proxy_flights_refused_total", "Cache misses denied at once because the maximum of upstream calls were in flight.", &c.flightsRefused),
	} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
