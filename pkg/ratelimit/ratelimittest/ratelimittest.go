// Package ratelimittest is the conformance suite every ratelimit.Limiter
// backend passes: burst, refill, all-or-nothing cost, refunds, peeks,
// independent keys, and atomicity under concurrency.
package ratelimittest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// Factory returns a new, empty limiter and a function that moves its clock
// forward (a fake clock's Advance, or a real sleep for backends whose clock is
// outside the process).
type Factory func(t *testing.T) (ratelimit.Limiter, func(time.Duration))

// Quota is the burst of the suite's policy.
const Quota = 5

// DefaultWindow is the suite's window when Options.Window is zero: a burst of
// 5, then one per second.
const DefaultWindow = 5 * time.Second

// Options tune the suite for a backend.
type Options struct {
	// Window is the policy's window (the quota is always Quota);
	// DefaultWindow when zero. A backend whose clock cannot be faked (Redis
	// keeps time itself) passes a short one, so that its advance can sleep
	// for real; every case then completes well within one emission interval
	// (Window/Quota) between advances.
	Window time.Duration
}

// policy is the policy under test; Run sets it before the cases run.
var policy = credential.RatePolicy{Quota: Quota, Window: DefaultWindow}

// Run runs every case against limiters made by newLimiter with the default
// options.
func Run(t *testing.T, newLimiter Factory) { RunWith(t, newLimiter, Options{}) }

// RunWith runs every case against limiters made by newLimiter under o. The
// cases run one after another (the policy is shared), so callers must not
// run two suites in parallel in one process.
func RunWith(t *testing.T, newLimiter Factory, o Options) {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	policy = credential.RatePolicy{Quota: Quota, Window: o.Window}
	cases := []struct {
		name string
		f    func(t *testing.T, l ratelimit.Limiter, advance func(time.Duration))
	}{
		{"Burst", testBurst},
		{"Refill", testRefill},
		{"CostAllOrNothing", testCost},
		{"Refund", testRefund},
		{"Peek", testPeek},
		{"IndependentKeys", testIndependent},
		{"InvalidPolicy", testInvalid},
		{"Concurrent", testConcurrent},
		{"ConcurrentBurst", testConcurrentBurst},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, advance := newLimiter(t)
			c.f(t, l, advance)
		})
	}
}

func allow(t *testing.T, l ratelimit.Limiter, key string, cost int64) ratelimit.Decision {
	t.Helper()
	d, err := l.Allow(t.Context(), key, policy, cost)
	if err != nil {
		t.Fatalf("Allow(%q, %d): %v", key, cost, err)
	}
	return d
}

func testBurst(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	for i := range policy.Quota {
		d := allow(t, l, "k", 1)
		if !d.Allowed || d.Remaining != policy.Quota-1-i {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i+1, d, policy.Quota-1-i)
		}
	}
	d := allow(t, l, "k", 1)
	if interval := policy.Window / Quota; d.Allowed || d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > interval {
		t.Fatalf("request past the burst: %+v, want refused, retry within %v", d, interval)
	}
}

func testRefill(t *testing.T, l ratelimit.Limiter, advance func(time.Duration)) {
	for range policy.Quota {
		allow(t, l, "k", 1)
	}
	d := allow(t, l, "k", 1)
	if d.Allowed {
		t.Fatal("allowed past the burst")
	}
	advance(d.RetryAfter)
	if d := allow(t, l, "k", 1); !d.Allowed {
		t.Fatalf("after RetryAfter: %+v, want allowed", d)
	}
	if d := allow(t, l, "k", 1); d.Allowed {
		t.Fatal("two allowed after one interval")
	}
	advance(policy.Window)
	if d := allow(t, l, "k", 0); d.Remaining != policy.Quota {
		t.Fatalf("after a whole window: %d remaining, want %d", d.Remaining, policy.Quota)
	}
}

func testCost(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	if d := allow(t, l, "k", 3); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("cost 3 of 5: %+v", d)
	}
	if d := allow(t, l, "k", 3); d.Allowed || d.Remaining != 2 {
		t.Fatalf("cost 3 of 2 left: %+v, want refused with 2 remaining", d)
	}
	if d := allow(t, l, "k", 2); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("cost 2 of 2 left: %+v, want allowed", d)
	}
}

func testRefund(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	for range policy.Quota {
		allow(t, l, "k", 1)
	}
	if d := allow(t, l, "k", -1); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("refund: %+v, want 1 remaining", d)
	}
	if d := allow(t, l, "k", 1); !d.Allowed {
		t.Fatal("refunded unit not usable")
	}
	for range 2 * policy.Quota {
		allow(t, l, "fresh", -1)
	}
	if d := allow(t, l, "fresh", 0); d.Remaining != policy.Quota {
		t.Fatalf("refunds beyond a full budget: %d remaining, want %d", d.Remaining, policy.Quota)
	}
}

func testPeek(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	allow(t, l, "k", 2)
	for range 3 {
		if d := allow(t, l, "k", 0); !d.Allowed || d.Remaining != 3 {
			t.Fatalf("peek: %+v, want 3 remaining", d)
		}
	}
}

func testIndependent(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	for range policy.Quota {
		allow(t, l, "a", 1)
	}
	if d := allow(t, l, "a", 1); d.Allowed {
		t.Fatal("a: allowed past its burst")
	}
	if d := allow(t, l, "b", 1); !d.Allowed || d.Remaining != policy.Quota-1 {
		t.Fatalf("b after a's burst: %+v, want a full budget", d)
	}
}

func testInvalid(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	for _, c := range []struct {
		p    credential.RatePolicy
		cost int64
	}{
		{credential.RatePolicy{Quota: 0, Window: time.Second}, 1},
		{credential.RatePolicy{Quota: 1, Window: 0}, 1},
		{policy, policy.Quota + 1},
	} {
		if _, err := l.Allow(t.Context(), "k", c.p, c.cost); !errors.Is(err, ratelimit.ErrInvalidPolicy) {
			t.Errorf("Allow(%+v, %d) = %v, want ErrInvalidPolicy", c.p, c.cost, err)
		}
	}
}

// testConcurrent: 8 goroutines × 20 requests on one key with the clock
// standing still: exactly Quota are allowed.
func testConcurrent(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				d, err := l.Allow(t.Context(), "k", policy, 1)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != policy.Quota {
		t.Fatal(fmt.Sprintf("%d of 160 concurrent requests allowed, want %d", got, policy.Quota))
	}
}

// testConcurrentBurst: Quota+1 decisions released at once on a fresh key:
// exactly Quota are allowed (the race: read-then-write backends let
// them all through).
func testConcurrentBurst(t *testing.T, l ratelimit.Limiter, _ func(time.Duration)) {
	const n = Quota + 1
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			<-start
			d, err := l.Allow(t.Context(), "fresh", policy, 1)
			if err != nil {
				errs <- err
				return
			}
			if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != Quota {
		t.Fatalf("%d of %d concurrent decisions on a fresh key allowed, want %d", got, n, Quota)
	}
}
