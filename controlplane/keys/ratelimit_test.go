package keys_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
	rlredis "github.com/talos-project/talos/pkg/ratelimit/redis"
)

// spyLimiter counts the calls to the limiter it wraps and fails them while
// fail is set.
type spyLimiter struct {
	next  ratelimit.Limiter
	calls atomic.Int64
	fail  atomic.Bool
}

var errLimiterDown = errors.New("limiter down")

func (s *spyLimiter) Allow(ctx context.Context, key string, p credential.RatePolicy, cost int64) (ratelimit.Decision, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return ratelimit.Decision{}, errLimiterDown
	}
	return s.next.Allow(ctx, key, p, cost)
}

type rlFixture struct {
	*testService
	spy      *spyLimiter
	enabled  *atomic.Bool
	observed map[string]int
}

// newRLService is a service enforcing keys' policies with an in-memory
// limiter on the service's clock (or next, when given).
func newRLService(t *testing.T, failClosed bool, next ratelimit.Limiter) *rlFixture {
	t.Helper()
	clk := newTestClock()
	if next == nil {
		next = memory.New(memory.Options{MaxKeys: 100, Now: clk.Now})
	}
	f := &rlFixture{spy: &spyLimiter{next: next}, enabled: &atomic.Bool{}, observed: map[string]int{}}
	f.enabled.Store(true)
	f.testService = newTestService(t, withClock(clk),
		withOptions(func(o *keys.Options) {
			o.RateLimit = keys.RateLimitOptions{Enabled: f.enabled.Load, FailClosed: failClosed}
		}),
		func(c *testConfig) {
			c.deps.Limiter = f.spy
			c.deps.OnRateLimit = func(result string, _ time.Duration) { f.observed[result]++ }
		})
	return f
}

func policyInput(quota int64) keys.IssueInput {
	in := issueInput("rl")
	in.RatePolicy = &credential.RatePolicy{Quota: quota, Window: time.Minute}
	return in
}

func (f *rlFixture) verifyPublic(t *testing.T, cred string, ip netip.Addr) (credential.Result, keys.RateState, error) {
	t.Helper()
	return f.svc.VerifyPublic(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred, ClientIP: ip})
}

func TestVerifyPublic_QuotaThenRateLimited(t *testing.T) {
	t.Parallel()
	f := newRLService(t, false, nil)
	k, cred := f.mustIssue(t, tenantA, policyInput(3))
	for i := range 3 {
		res, rs, err := f.verifyPublic(t, cred, netip.Addr{})
		if err != nil {
			t.Fatalf("verify %d: %v, want valid", i+1, err)
		}
		if res.KeyID != k.ID || !rs.Counted || !rs.Decision.Allowed || rs.Decision.Remaining != int64(2-i) {
			t.Fatalf("verify %d: state %+v, want allowed with %d remaining", i+1, rs, 2-i)
		}
		if rs.Policy == nil || rs.Policy.Quota != 3 {
			t.Fatalf("verify %d: policy %+v, want quota 3", i+1, rs.Policy)
		}
	}
	res, rs, err := f.verifyPublic(t, cred, netip.Addr{})
	if !errors.Is(err, credential.ErrRateLimited) {
		t.Fatalf("4th verify: %v, want ErrRateLimited", err)
	}
	var ce *credential.Error
	if !errors.As(err, &ce) || ce.Message != "rate limit exceeded" || ce.RetryAfter != 20*time.Second {
		t.Fatalf("4th verify: %#v, want message %q and RetryAfter 20s", ce, "rate limit exceeded")
	}
	if res.KeyID != k.ID || !rs.Counted || rs.Decision.Allowed || rs.Decision.Remaining != 0 {
		t.Fatalf("4th verify: result %s, state %+v, want the key, limited with 0 remaining", res.KeyID, rs)
	}
	if got, want := rs.ResetTime(), epoch.Add(time.Minute); !got.Equal(want) {
		t.Errorf("reset time %v, want %v (budget full again)", got, want)
	}
	if f.observed["allowed"] != 3 || f.observed["limited"] != 1 {
		t.Errorf("observed %v, want 3 allowed, 1 limited", f.observed)
	}
	// One emission interval later one unit is back.
	f.clock.Advance(20 * time.Second)
	if _, _, err := f.verifyPublic(t, cred, netip.Addr{}); err != nil {
		t.Fatalf("after 20s: %v, want valid", err)
	}
	// Verify (the sidecar protocol's call) never counts, even over budget.
	for range 5 {
		if _, err := f.verify(t, tenantA, cred); err != nil {
			t.Fatalf("Verify over budget: %v, want valid (not counted)", err)
		}
	}
	if _, err := f.svc.BatchVerify(t.Context(), []credential.Presented{{Tenant: tenantA, Credential: cred}}); err != nil {
		t.Fatal(err)
	}
	if n := f.spy.calls.Load(); n != 5 {
		t.Errorf("limiter called %d times, want 5 (VerifyPublic only)", n)
	}
}

func TestVerifyPublic_InvalidKeysSpendNothing(t *testing.T) {
	t.Parallel()
	f := newRLService(t, false, nil)
	_, cred := f.mustIssue(t, tenantA, policyInput(1))
	_, revoked := f.mustIssue(t, tenantA, policyInput(1))
	rk, _ := f.verify(t, tenantA, revoked)
	f.mustRevoke(t, tenantA, credential.KindIssued, rk.KeyID)
	short := policyInput(1)
	short.TTL = time.Minute
	_, expired := f.mustIssue(t, tenantA, short)
	cidr := policyInput(1)
	cidr.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	_, restricted := f.mustIssue(t, tenantA, cidr)
	f.clock.Advance(2 * time.Minute)

	tests := []struct {
		name string
		cred string
		ip   netip.Addr
		want error
	}{
		{"wrong secret", sameIDOtherSecret(t, cred), netip.Addr{}, credential.ErrNotFound},
		{"revoked", revoked, netip.Addr{}, credential.ErrRevoked},
		{"expired", expired, netip.Addr{}, credential.ErrExpired},
		{"address refused", restricted, netip.MustParseAddr("192.0.2.1"), credential.ErrForbidden},
	}
	for _, tt := range tests {
		for range 3 {
			_, rs, err := f.verifyPublic(t, tt.cred, tt.ip)
			if !errors.Is(err, tt.want) {
				t.Fatalf("%s: %v, want %v", tt.name, err, tt.want)
			}
			if rs.Counted {
				t.Errorf("%s: counted", tt.name)
			}
		}
	}
	if n := f.spy.calls.Load(); n != 0 {
		t.Fatalf("limiter called %d times for invalid keys, want 0", n)
	}
	// The key whose secret was guessed still has its whole quota of 1, and
	// the restricted key its own from an allowed address.
	if _, _, err := f.verifyPublic(t, cred, netip.Addr{}); err != nil {
		t.Fatalf("valid key after wrong guesses: %v", err)
	}
	if _, _, err := f.verifyPublic(t, restricted, netip.MustParseAddr("10.1.2.3")); err != nil {
		t.Fatalf("restricted key from an allowed address: %v", err)
	}
}

func TestVerifyPublic_NoPolicyNeverLimited(t *testing.T) {
	t.Parallel()
	f := newRLService(t, true, nil)
	_, cred := f.mustIssue(t, tenantA, issueInput("free"))
	f.spy.fail.Store(true) // even closed: the limiter is never asked
	for range 10 {
		_, rs, err := f.verifyPublic(t, cred, netip.Addr{})
		if err != nil || rs.Policy != nil || rs.Counted {
			t.Fatalf("key without policy: %v, state %+v; want valid, uncounted", err, rs)
		}
	}
	if n := f.spy.calls.Load(); n != 0 {
		t.Errorf("limiter called %d times, want 0", n)
	}
}

func TestVerifyPublic_DisabledCountsNothingButReportsPolicy(t *testing.T) {
	t.Parallel()
	f := newRLService(t, false, nil)
	_, cred := f.mustIssue(t, tenantA, policyInput(1))
	f.enabled.Store(false)
	for range 5 {
		_, rs, err := f.verifyPublic(t, cred, netip.Addr{})
		if err != nil || rs.Counted || rs.Policy == nil || rs.Policy.Quota != 1 {
			t.Fatalf("disabled: %v, state %+v; want valid, uncounted, policy reported", err, rs)
		}
	}
	if n := f.spy.calls.Load(); n != 0 {
		t.Fatalf("limiter called %d times while disabled", n)
	}
	// Enabled again (hot): the next request counts, the one after is limited.
	f.enabled.Store(true)
	if _, rs, err := f.verifyPublic(t, cred, netip.Addr{}); err != nil || !rs.Counted {
		t.Fatalf("re-enabled: %v, %+v", err, rs)
	}
	if _, _, err := f.verifyPublic(t, cred, netip.Addr{}); !errors.Is(err, credential.ErrRateLimited) {
		t.Fatalf("re-enabled, over quota: %v, want ErrRateLimited", err)
	}
}

func TestVerifyPublic_LimiterFailure(t *testing.T) {
	t.Parallel()
	for _, closed := range []bool{false, true} {
		f := newRLService(t, closed, nil)
		_, cred := f.mustIssue(t, tenantA, policyInput(1))
		f.spy.fail.Store(true)
		for range 3 {
			_, rs, err := f.verifyPublic(t, cred, netip.Addr{})
			if closed {
				if !errors.Is(err, credential.ErrUnavailable) || credential.IsVerdict(err) {
					t.Fatalf("closed: %v, want ErrUnavailable (not a verdict)", err)
				}
				continue
			}
			if err != nil || rs.Counted || rs.Policy == nil {
				t.Fatalf("open: %v, state %+v; want valid, no decision, policy kept", err, rs)
			}
		}
		if f.observed["error"] != 3 {
			t.Errorf("closed=%v: observed %v, want 3 errors", closed, f.observed)
		}
		vs, states, err := f.svc.BatchVerifyPublic(t.Context(), []credential.Presented{{Tenant: tenantA, Credential: cred}})
		if err != nil {
			t.Fatal(err)
		}
		if closed != errors.Is(vs[0].Err, credential.ErrUnavailable) || states[0].Counted {
			t.Errorf("closed=%v: batch item %v, %+v", closed, vs[0].Err, states[0])
		}
	}
}

func TestBatchVerifyPublic_PerItem(t *testing.T) {
	t.Parallel()
	f := newRLService(t, false, nil)
	_, one := f.mustIssue(t, tenantA, policyInput(1))
	_, two := f.mustIssue(t, tenantA, policyInput(2))
	_, free := f.mustIssue(t, tenantA, issueInput("free"))
	ps := func(creds ...string) []credential.Presented {
		out := make([]credential.Presented, len(creds))
		for i, c := range creds {
			out[i] = credential.Presented{Tenant: tenantA, Credential: c}
		}
		return out
	}
	// one: allowed then limited within the batch; two: allowed twice; a
	// wrong secret and a key without policy are not counted.
	vs, states, err := f.svc.BatchVerifyPublic(t.Context(), ps(one, two, one, free, sameIDOtherSecret(t, two), two))
	if err != nil {
		t.Fatal(err)
	}
	wantErr := []error{nil, nil, credential.ErrRateLimited, nil, credential.ErrNotFound, nil}
	wantCounted := []bool{true, true, true, false, false, true}
	wantRemaining := []int64{0, 1, 0, 0, 0, 0}
	for i := range vs {
		if !errors.Is(vs[i].Err, wantErr[i]) || (wantErr[i] == nil) != (vs[i].Err == nil) {
			t.Errorf("item %d: %v, want %v", i, vs[i].Err, wantErr[i])
		}
		if states[i].Counted != wantCounted[i] || (states[i].Counted && states[i].Decision.Remaining != wantRemaining[i]) {
			t.Errorf("item %d: state %+v, want counted=%v remaining %d", i, states[i], wantCounted[i], wantRemaining[i])
		}
	}
	if states[2].Decision.RetryAfter != time.Minute {
		t.Errorf("limited item: RetryAfter %v, want 1m", states[2].Decision.RetryAfter)
	}
	if n := f.spy.calls.Load(); n != 4 {
		t.Errorf("limiter called %d times, want 4", n)
	}
}

// TestVerifyPublic_Redis runs the quota case on the shared Redis backend:
// two services (two control planes) share one budget.
func TestVerifyPublic_Redis(t *testing.T) {
	t.Parallel()
	addr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("TALOS_TEST_REDIS_ADDR is not set; skipping the Redis test")
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "talos-test:keys-rl:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	lim := rlredis.New(c, rlredis.Options{KeyPrefix: prefix, Timeout: 2 * time.Second})
	f := newRLService(t, false, lim)
	other := newTestService(t, withStore(f.store), withSecrets(f.secrets),
		withOptions(func(o *keys.Options) { o.RateLimit.Enabled = func() bool { return true } }),
		func(c *testConfig) { c.deps.Limiter = lim })
	_, cred := f.mustIssue(t, tenantA, policyInput(3))
	for i, svc := range []*keys.Service{f.svc, other.svc, f.svc} {
		if _, _, err := svc.VerifyPublic(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred}); err != nil {
			t.Fatalf("verify %d: %v", i+1, err)
		}
	}
	_, rs, err := other.svc.VerifyPublic(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred})
	if !errors.Is(err, credential.ErrRateLimited) || rs.Decision.Remaining != 0 || rs.Decision.RetryAfter <= 0 {
		t.Fatalf("4th verify on the other service: %v, %+v; want limited by the shared budget", err, rs)
	}
}
