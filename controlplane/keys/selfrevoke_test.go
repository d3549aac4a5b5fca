package keys_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

func selfRevoke(t *testing.T, ts *testService, addr, cred string) error {
	t.Helper()
	var a netip.Addr
	if addr != "" {
		a = netip.MustParseAddr(addr)
	}
	return ts.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred, ClientIP: a}, credential.ReasonKeyCompromise)
}

func retryAfter(err error) time.Duration {
	var ce *credential.Error
	if errors.As(err, &ce) {
		return ce.RetryAfter
	}
	return 0
}

// TestService_SelfRevoke_BruteForceThrottled is finding 7 of issue 11: a
// 4-digit imported key (imported with allow_weak) guessed through
// self-revoke from one address. After the burst of 10 failures every attempt
// is refused with ErrRateLimited and a RetryAfter, the right key included,
// until one interval (6s) has passed; then exactly one more attempt runs.
func TestService_SelfRevoke_BruteForceThrottled(t *testing.T) {
	ts := newTestService(t, withRevokeLimiter(), withWeakImports())
	const secret = "7351"
	ts.mustImport(t, tenantA, secret, issueInput("alice"))
	const attacker = "198.51.100.7"
	burst := int(keys.DefaultSelfRevokeThrottle.Quota)
	for i := range burst {
		checkErr(t, fmt.Sprintf("guess %d", i), selfRevoke(t, ts, attacker, fmt.Sprintf("%04d", i)), credential.ErrNotFound)
	}
	for _, guess := range []string{"0010", "0011", secret} {
		err := selfRevoke(t, ts, attacker, guess)
		checkErr(t, "guess "+guess+" past the burst", err, credential.ErrRateLimited)
		if ra := retryAfter(err); ra <= 0 || ra > 6*time.Second {
			t.Errorf("guess %s: RetryAfter %v, want (0, 6s]", guess, ra)
		}
	}
	if _, err := ts.verify(t, tenantA, secret); err != nil {
		t.Fatalf("the key was revoked by a throttled attempt: %v", err)
	}
	ts.clock.Advance(6 * time.Second)
	checkErr(t, "one interval later", selfRevoke(t, ts, attacker, "0012"), credential.ErrNotFound)
	checkErr(t, "right after", selfRevoke(t, ts, attacker, "0013"), credential.ErrRateLimited)

	// Other addresses keep their own budget: the holder revokes from home.
	checkErr(t, "holder from another address", selfRevoke(t, ts, "203.0.113.9", secret), nil)
	_, err := ts.verify(t, tenantA, secret)
	checkErr(t, "verify after revoke", err, credential.ErrRevoked)
}

// TestService_SelfRevoke_ThrottleGrouping: IPv6 addresses share a budget per
// /64, IPv4-mapped addresses are their IPv4 address, unknown addresses share
// one budget.
func TestService_SelfRevoke_ThrottleGrouping(t *testing.T) {
	ts := newTestService(t, withRevokeLimiter())
	exhaust := func(addr string) {
		for range keys.DefaultSelfRevokeThrottle.Quota {
			checkErr(t, "guess from "+addr, selfRevoke(t, ts, addr, "not-a-key-0123456789"), credential.ErrNotFound)
		}
	}
	exhaust("2001:db8:1:2::1")
	checkErr(t, "same /64", selfRevoke(t, ts, "2001:db8:1:2:ffff::9", "x-not-a-key"), credential.ErrRateLimited)
	checkErr(t, "next /64", selfRevoke(t, ts, "2001:db8:1:3::1", "x-not-a-key"), credential.ErrNotFound)

	exhaust("192.0.2.1")
	checkErr(t, "IPv4-mapped", selfRevoke(t, ts, "::ffff:192.0.2.1", "x-not-a-key"), credential.ErrRateLimited)
	checkErr(t, "next IPv4", selfRevoke(t, ts, "192.0.2.2", "x-not-a-key"), credential.ErrNotFound)

	exhaust("")
	checkErr(t, "unknown address", selfRevoke(t, ts, "", "x-not-a-key"), credential.ErrRateLimited)
}

// TestService_SelfRevoke_NetworkBudget: rotating through the /64s of one
// IPv6 /48 (65,536 of them, free from a tunnel broker) buys 16 addresses'
// budgets, not 65,536; another /48 is untouched, and a refused /48 does not
// spend the /64's own budget.
func TestService_SelfRevoke_NetworkBudget(t *testing.T) {
	ts := newTestService(t, withRevokeLimiter())
	per := int(keys.DefaultSelfRevokeThrottle.Quota)
	const factor = 16
	failures := 0
	for sub := range factor + 4 {
		for range per {
			err := selfRevoke(t, ts, fmt.Sprintf("2001:db8:7:%x::1", sub), "not-a-key-0123456789")
			if errors.Is(err, credential.ErrNotFound) {
				failures++
			} else {
				checkErr(t, "past the /48's budget", err, credential.ErrRateLimited)
			}
		}
	}
	if failures != factor*per {
		t.Fatalf("%d guesses ran from one /48, want %d", failures, factor*per)
	}
	checkErr(t, "another /48", selfRevoke(t, ts, "2001:db8:8::1", "x-not-a-key"), credential.ErrNotFound)
	// One interval later the /48 lets one more through, from a fresh /64.
	ts.clock.Advance(6 * time.Second / factor)
	checkErr(t, "a /64 of the /48 after a refill", selfRevoke(t, ts, "2001:db8:7:ff::1", "x-not-a-key"), credential.ErrNotFound)
}

// TestService_SelfRevoke_OnlyFailuresCount: successful self-revokes (and
// repeated ones of a revoked key) are refunded, so an address that revokes
// many keys keeps its whole failure budget.
func TestService_SelfRevoke_OnlyFailuresCount(t *testing.T) {
	ts := newTestService(t, withRevokeLimiter())
	const addr = "192.0.2.50"
	for range 25 {
		_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
		checkErr(t, "revoke", selfRevoke(t, ts, addr, cred), nil)
		checkErr(t, "revoke again", selfRevoke(t, ts, addr, cred), nil)
	}
	for i := range keys.DefaultSelfRevokeThrottle.Quota {
		checkErr(t, fmt.Sprint("failure ", i), selfRevoke(t, ts, addr, "x-not-a-key"), credential.ErrNotFound)
	}
	checkErr(t, "past the burst", selfRevoke(t, ts, addr, "x-not-a-key"), credential.ErrRateLimited)
	// Requests refused before any guess is tested are not charged either.
	ts2 := newTestService(t, withRevokeLimiter())
	for range 20 {
		err := ts2.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tenantA, Credential: "x-not-a-key", ClientIP: netip.MustParseAddr(addr)}, credential.ReasonPrivilegeWithdrawn)
		checkErr(t, "admin-only reason", err, credential.ErrInvalidArgument)
	}
	checkErr(t, "first failure", selfRevoke(t, ts2, addr, "x-not-a-key"), credential.ErrNotFound)
}

// TestService_SelfRevoke_ThrottleConcurrent: guesses sent at once cannot
// overrun the budget, since each is charged before it is tested.
func TestService_SelfRevoke_ThrottleConcurrent(t *testing.T) {
	ts := newTestService(t, withRevokeLimiter())
	var mu sync.Mutex
	got := map[error]int{}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			err := selfRevoke(t, ts, "192.0.2.99", fmt.Sprintf("guess-%04d-abcdefgh", i))
			mu.Lock()
			defer mu.Unlock()
			got[credential.KindOf(err)]++
		})
	}
	wg.Wait()
	burst := int(keys.DefaultSelfRevokeThrottle.Quota)
	if got[credential.ErrNotFound] != burst || got[credential.ErrRateLimited] != 60-burst {
		t.Errorf("outcomes %v, want %d not found and %d rate limited", got, burst, 60-burst)
	}
}

// TestService_SelfRevoke_NoLimiter: without a limiter nothing is throttled
// (the service's behaviour before issue 11).
func TestService_SelfRevoke_NoLimiter(t *testing.T) {
	ts := newTestService(t)
	for i := range 50 {
		checkErr(t, fmt.Sprint("guess ", i), selfRevoke(t, ts, "192.0.2.1", "x-not-a-key"), credential.ErrNotFound)
	}
}

func TestService_New_RejectsInvalidThrottle(t *testing.T) {
	_, err := keys.New(keys.Options{Issuer: testIssuer, Prefix: testPrefix, SelfRevokeThrottle: credential.RatePolicy{Quota: 5}},
		keys.Deps{Store: newTestStore(t), Secrets: mustSecretSet(t, 's')})
	if err == nil {
		t.Fatal("New accepted a throttle with no window")
	}
}
