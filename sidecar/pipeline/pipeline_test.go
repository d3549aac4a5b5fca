package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/cache/redis"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
	"github.com/talos-project/talos/sidecar/pipeline"
)

// fakeUpstream answers from a map and counts calls; down makes it fail like
// an unreachable control plane.
type fakeUpstream struct {
	mu    sync.Mutex
	keys  map[string]credential.Result
	denid map[string]error
	jwks  []byte
	// policy is the token policy served; nil answers ErrUnavailable, like
	// a control plane that does not serve GetTokenPolicy.
	policy atomic.Pointer[token.Policy]
	down   atomic.Bool
	calls  atomic.Int64
	gate   chan struct{} // when set, Verify waits for it
	// during, when set, runs inside Verify: what happens while a call is
	// in flight.
	during func()
}

func newUpstream() *fakeUpstream {
	return &fakeUpstream{keys: map[string]credential.Result{}, denid: map[string]error{}}
}

func (f *fakeUpstream) Verify(ctx context.Context, p credential.Presented) (credential.Result, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.during != nil {
		f.during()
	}
	if f.down.Load() {
		return credential.Result{}, &credential.Error{Kind: credential.ErrUnavailable, Reason: "SERVICE_UNAVAILABLE"}
	}
	if !p.DeferIPCheck {
		return credential.Result{}, errors.New("the pipeline must defer the IP check")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.denid[p.Credential]; ok {
		return f.keys[p.Credential], err
	}
	if r, ok := f.keys[p.Credential]; ok {
		return r, nil
	}
	return credential.Result{Type: credential.TypeImported}, &credential.Error{Kind: credential.ErrNotFound, Reason: "NOT_FOUND"}
}

func (f *fakeUpstream) JWKS(context.Context) ([]byte, error) {
	if f.down.Load() || f.jwks == nil {
		return nil, credential.ErrUnavailable
	}
	return f.jwks, nil
}

func (f *fakeUpstream) TokenPolicy(context.Context) (*token.Policy, error) {
	p := f.policy.Load()
	if f.down.Load() || p == nil {
		return nil, credential.ErrUnavailable
	}
	return p, nil
}

func (f *fakeUpstream) set(cred string, r credential.Result, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[cred] = r
	if err != nil {
		f.denid[cred] = err
	} else {
		delete(f.denid, cred)
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newPipeline(t *testing.T, up pipeline.Upstream, o pipeline.Options) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.New(up, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func presented(cred string) credential.Presented {
	return credential.Presented{Tenant: credential.DefaultTenant, Credential: cred, ClientIP: netip.MustParseAddr("10.0.0.1")}
}

func valid(id string) credential.Result {
	return credential.Result{Type: credential.TypeImported, Tenant: credential.DefaultTenant, KeyID: credential.KeyID(id), ActorID: "actor", Scopes: []string{"read"}, Status: credential.StateActive}
}

// authorize calls Authorize and waits for the in-process cache write.
func authorize(p *pipeline.Pipeline, pr credential.Presented) extauthz.Verdict {
	v := p.Authorize(context.Background(), pr)
	p.Wait()
	return v
}

func TestHitAfterMiss(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: time.Minute})

	v := authorize(p, presented("key-one"))
	if v.Err != nil || v.Result.KeyID != "k1" || v.Cache != extauthz.CacheMiss {
		t.Fatalf("first: %+v", v)
	}
	v = authorize(p, presented("key-one"))
	if v.Err != nil || v.Result.KeyID != "k1" || v.Cache != extauthz.CacheHit {
		t.Fatalf("second: %+v", v)
	}
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("upstream calls = %d, want 1", got)
	}
	if s := p.Stats(); s.L1Hits != 1 || s.UpstreamCalls != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestTTLBoundsACachedAllow(t *testing.T) {
	clk := &clock{now: time.Now()}
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, Now: clk.Now})

	authorize(p, presented("key-one"))
	up.set("key-one", valid("k1"), &credential.Error{Kind: credential.ErrRevoked, Reason: "API_KEY_REVOKED"})
	clk.Add(9 * time.Second)
	if v := authorize(p, presented("key-one")); v.Err != nil {
		t.Fatalf("within TTL: %v", v.Err)
	}
	clk.Add(2 * time.Second)
	v := authorize(p, presented("key-one"))
	if !errors.Is(v.Err, credential.ErrRevoked) || v.Cache != extauthz.CacheMiss {
		t.Fatalf("after TTL: %+v", v)
	}
	// The revocation is cached too.
	if v := authorize(p, presented("key-one")); !errors.Is(v.Err, credential.ErrRevoked) || v.Cache != extauthz.CacheHit {
		t.Fatalf("revocation cached: %+v", v)
	}
}

func TestTTLCappedAtKeyExpiry(t *testing.T) {
	clk := &clock{now: time.Now()}
	up := newUpstream()
	r := valid("k1")
	r.ExpireTime = clk.Now().Add(5 * time.Second)
	up.set("key-one", r, nil)
	p := newPipeline(t, up, pipeline.Options{TTL: time.Hour, StaleIfError: time.Hour, Now: clk.Now})

	if v := authorize(p, presented("key-one")); v.Err != nil {
		t.Fatal(v.Err)
	}
	clk.Add(5 * time.Second)
	up.down.Store(true) // not even stale-if-error may outlive the key
	if v := authorize(p, presented("key-one")); !errors.Is(v.Err, credential.ErrExpired) && !errors.Is(v.Err, credential.ErrUnavailable) {
		t.Fatalf("expired key: %+v", v)
	}
}

func TestNegativeCaching(t *testing.T) {
	clk := &clock{now: time.Now()}
	up := newUpstream()
	p := newPipeline(t, up, pipeline.Options{TTL: time.Minute, NegativeTTL: 5 * time.Second, Now: clk.Now})

	for range 3 {
		if v := authorize(p, presented("unknown")); !errors.Is(v.Err, credential.ErrNotFound) {
			t.Fatalf("verdict %+v", v)
		}
	}
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("upstream calls = %d, want 1 (negative cache)", got)
	}
	clk.Add(6 * time.Second)
	up.set("unknown", valid("k9"), nil) // imported since
	if v := authorize(p, presented("unknown")); v.Err != nil {
		t.Fatalf("after negative TTL: %+v", v)
	}

	// NegativeTTL 0 disables it.
	up2 := newUpstream()
	p2 := newPipeline(t, up2, pipeline.Options{TTL: time.Minute})
	authorize(p2, presented("nope"))
	authorize(p2, presented("nope"))
	if got := up2.calls.Load(); got != 2 {
		t.Fatalf("upstream calls = %d, want 2 without negative caching", got)
	}
}

func TestStaleIfError(t *testing.T) {
	clk := &clock{now: time.Now()}
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Minute, Now: clk.Now})
	authorize(p, presented("key-one"))

	up.down.Store(true)
	clk.Add(30 * time.Second)
	v := authorize(p, presented("key-one"))
	if v.Err != nil || v.Cache != extauthz.CacheStale {
		t.Fatalf("stale serve: %+v", v)
	}
	if v := authorize(p, presented("never-seen")); !errors.Is(v.Err, credential.ErrUnavailable) {
		t.Fatalf("unknown credential while down: %+v", v)
	}
	clk.Add(time.Minute)
	if v := authorize(p, presented("key-one")); !errors.Is(v.Err, credential.ErrUnavailable) {
		t.Fatalf("past the stale bound: %+v", v)
	}
	up.down.Store(false)
	if v := authorize(p, presented("key-one")); v.Err != nil || v.Cache != extauthz.CacheMiss {
		t.Fatalf("recovered: %+v", v)
	}
}

func TestLocalChecks(t *testing.T) {
	up := newUpstream()
	r := valid("k1")
	r.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	up.set("key-one", r, nil)
	p := newPipeline(t, up, pipeline.Options{})

	if v := authorize(p, presented("key-one")); v.Err != nil {
		t.Fatalf("inside the CIDR: %v", v.Err)
	}
	out := presented("key-one")
	out.ClientIP = netip.MustParseAddr("192.0.2.1")
	v := authorize(p, out)
	if !errors.Is(v.Err, credential.ErrForbidden) || v.Cache != extauthz.CacheHit {
		t.Fatalf("outside the CIDR, from cache: %+v", v)
	}
	mapped := presented("key-one")
	mapped.ClientIP = netip.MustParseAddr("::ffff:10.1.2.3")
	if v := authorize(p, mapped); v.Err != nil {
		t.Fatalf("IPv4-mapped: %v", v.Err)
	}
	unknown := presented("key-one")
	unknown.ClientIP = netip.Addr{}
	if v := authorize(p, unknown); !errors.Is(v.Err, credential.ErrForbidden) {
		t.Fatalf("unknown client IP must fail closed: %+v", v)
	}
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("upstream calls = %d", got)
	}
}

func TestGarbageNeverGoesUpstream(t *testing.T) {
	up := newUpstream()
	p := newPipeline(t, up, pipeline.Options{})
	long := make([]byte, 9000)
	for i := range long {
		long[i] = 'a'
	}
	for _, c := range []string{"", string(long), "ory_ak_v2_" + strings.Repeat("A", 72)} {
		v := authorize(p, presented(c))
		if v.Err == nil {
			t.Fatalf("%.20q accepted", c)
		}
	}
	if got := up.calls.Load(); got != 0 {
		t.Fatalf("upstream calls = %d, want 0", got)
	}
}

func TestOneUpstreamCallPerCredential(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	up.gate = make(chan struct{})
	p := newPipeline(t, up, pipeline.Options{})

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if v := p.Authorize(context.Background(), presented("key-one")); v.Err != nil {
				errs <- v.Err
			}
		})
	}
	// Hold the first call until every lookup has missed the memory cache.
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().L1Misses < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := up.calls.Load(); got >= n/2 {
		t.Fatalf("upstream calls = %d for %d concurrent lookups", got, n)
	}
}

func TestCallerCancellationDoesNotFailOthers(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	up.gate = make(chan struct{})
	p := newPipeline(t, up, pipeline.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan extauthz.Verdict)
	go func() { first <- p.Authorize(ctx, presented("key-one")) }()
	for up.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if v := <-first; !errors.Is(v.Err, credential.ErrDeadlineExceeded) {
		t.Fatalf("cancelled caller: %+v", v)
	}
	close(up.gate)
	if v := authorize(p, presented("key-one")); v.Err != nil {
		t.Fatalf("next caller: %+v", v)
	}
}

func TestAudiencesArePartOfTheKey(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{})
	a := presented("key-one")
	a.ExpectedAudiences = []string{"svc-a"}
	authorize(p, a)
	authorize(p, presented("key-one"))
	if got := up.calls.Load(); got != 2 {
		t.Fatalf("upstream calls = %d, want 2 (different audiences, different entries)", got)
	}
}

func TestDerivedJWTVerifiedLocally(t *testing.T) {
	clk := &clock{now: time.Now().Truncate(time.Second)}
	key, err := token.GenerateKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := token.NewSigner([]token.SigningKey{key}, "")
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream()
	up.jwks, _ = json.Marshal(sg.PublicJWKS(clk.Now()))
	up.policy.Store(mustPolicy(t, "http://cp", nil, time.Minute))
	p := newPipeline(t, up, pipeline.Options{Now: clk.Now, NegativeTTL: time.Second})

	tok, err := sg.SignJWT(token.Claims{
		ID: "j1", Subject: "k1", Issuer: "http://cp", Tenant: credential.DefaultTenant, ActorID: "a",
		Scopes: []string{"read"}, IssuedAt: clk.Now(), Expiry: clk.Now().Add(time.Minute),
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := authorize(p, presented(tok))
	if v.Err != nil || v.Result.KeyID != "k1" || v.Result.Type != credential.TypeJWT {
		t.Fatalf("jwt: %+v", v)
	}
	if v := authorize(p, presented(tok)); v.Err != nil || v.Cache != extauthz.CacheHit {
		t.Fatalf("jwt cached: %+v", v)
	}
	far := presented(tok)
	far.ClientIP = netip.MustParseAddr("192.0.2.1")
	if v := authorize(p, far); !errors.Is(v.Err, credential.ErrForbidden) {
		t.Fatalf("jwt CIDR: %+v", v)
	}
	if got := up.calls.Load(); got != 0 {
		t.Fatalf("upstream verify calls = %d, want 0", got)
	}
	clk.Add(2*time.Minute + time.Second) // past its expiry plus the skew
	if v := authorize(p, presented(tok)); !errors.Is(v.Err, credential.ErrExpired) {
		t.Fatalf("expired jwt: %+v", v)
	}

	// A token signed by a key the control plane never published.
	other, _ := token.GenerateKey(token.EdDSA, nil)
	sg2, _ := token.NewSigner([]token.SigningKey{other}, "")
	forged, _ := sg2.SignJWT(token.Claims{ID: "j2", Subject: "k1", Tenant: credential.DefaultTenant, IssuedAt: clk.Now(), Expiry: clk.Now().Add(time.Minute)})
	if v := authorize(p, presented(forged)); v.Err == nil || errors.Is(v.Err, credential.ErrUnavailable) {
		t.Fatalf("forged jwt: %+v", v)
	}
}

func redisStore(t *testing.T, addr string) cache.Store {
	t.Helper()
	s, err := redis.New(redis.Options{Addrs: []string{addr}, Timeout: 200 * time.Millisecond, KeyPrefix: "talos-test:" + uuid.NewString() + ":"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSharedCacheServesASecondSidecar(t *testing.T) {
	addr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("TALOS_TEST_REDIS_ADDR is not set")
	}
	shared := redisStore(t, addr)
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	a := newPipeline(t, up, pipeline.Options{Shared: shared})
	b := newPipeline(t, up, pipeline.Options{Shared: shared})

	if v := authorize(a, presented("key-one")); v.Err != nil || v.Cache != extauthz.CacheMiss {
		t.Fatalf("a: %+v", v)
	}
	v := authorize(b, presented("key-one"))
	if v.Err != nil || v.Cache != extauthz.CacheHit || v.Result.KeyID != "k1" || v.Result.ActorID != "actor" {
		t.Fatalf("b: %+v", v)
	}
	if s := b.Stats(); s.L2Hits != 1 || s.UpstreamCalls != 0 {
		t.Fatalf("b stats = %+v", s)
	}
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("upstream calls = %d, want 1", got)
	}
}

func TestDeadSharedCacheIsAMiss(t *testing.T) {
	redis.SetLogger(slog.New(slog.DiscardHandler))
	shared := redisStore(t, "127.0.0.1:1") // nothing listens there
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{Shared: shared})
	for i := range 3 {
		if v := authorize(p, presented("key-one")); v.Err != nil {
			t.Fatalf("check %d: %v", i, v.Err)
		}
	}
	if s := p.Stats(); s.L2Errors == 0 {
		t.Fatalf("stats = %+v, want L2 errors counted", s)
	}
}

func BenchmarkAuthorizeHit(b *testing.B) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p, err := pipeline.New(up, pipeline.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pr := presented("key-one")
	authorize(p, pr)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v := p.Authorize(ctx, pr); v.Err != nil {
			b.Fatal(v.Err)
		}
	}
	if s := p.Stats(); s.UpstreamCalls != 1 {
		b.Fatal(fmt.Sprint("upstream calls ", s.UpstreamCalls))
	}
}
