package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
)

var errRedis = errors.New("redis: connection refused")

// flaky is a primary that fails while down is set and counts its calls.
type flaky struct {
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flaky) Allow(context.Context, string, credential.RatePolicy, int64) (ratelimit.Decision, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return ratelimit.Decision{}, errRedis
	}
	return ratelimit.Decision{Allowed: true, Remaining: 7}, nil
}

// changes records OnStateChange calls.
type changes struct {
	mu  sync.Mutex
	got []bool
}

func (c *changes) record(open bool) { c.mu.Lock(); c.got = append(c.got, open); c.mu.Unlock() }
func (c *changes) list() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bool(nil), c.got...)
}

func TestResilientOpensAfterThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &flaky{}
		var ch changes
		r := ratelimit.NewResilient(p, ratelimit.ResilientOptions{Threshold: 3, OpenFor: time.Second, OnStateChange: ch.record})
		if d, err := r.Allow(t.Context(), "k", tenPerMinute, 1); err != nil || !d.Allowed || d.Fallback || d.Remaining != 7 {
			t.Fatalf("healthy: %+v, %v; want the primary's decision", d, err)
		}
		p.down.Store(true)
		for i := range 3 {
			if r.State() != ratelimit.StateClosed {
				t.Fatalf("open after %d errors, want %d", i, 3)
			}
			if _, err := r.Allow(t.Context(), "k", tenPerMinute, 1); !errors.Is(err, errRedis) {
				t.Fatalf("error %d: %v, want the primary's error", i+1, err)
			}
		}
		if r.State() != ratelimit.StateOpen {
			t.Fatalf("state %v after 3 errors, want open", r.State())
		}
		// Open: the primary is not called, the call fails at once.
		before := p.calls.Load()
		for range 10 {
			if _, err := r.Allow(t.Context(), "k", tenPerMinute, 1); !errors.Is(err, ratelimit.ErrBackendDown) {
				t.Fatalf("open: %v, want ErrBackendDown", err)
			}
		}
		if n := p.calls.Load() - before; n != 0 {
			t.Fatalf("primary called %d times while open", n)
		}
		if got := ch.list(); len(got) != 1 || !got[0] {
			t.Fatalf("state changes %v, want [true]", got)
		}
	})
}

func TestResilientSuccessResetsCount(t *testing.T) {
	p := &flaky{}
	r := ratelimit.NewResilient(p, ratelimit.ResilientOptions{Threshold: 3})
	for range 5 {
		p.down.Store(true)
		r.Allow(t.Context(), "k", tenPerMinute, 1)
		r.Allow(t.Context(), "k", tenPerMinute, 1)
		p.down.Store(false)
		r.Allow(t.Context(), "k", tenPerMinute, 1)
	}
	if r.State() != ratelimit.StateClosed {
		t.Fatalf("opened on errors that were not consecutive")
	}
}

func TestResilientHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &flaky{}
		var ch changes
		r := ratelimit.NewResilient(p, ratelimit.ResilientOptions{Threshold: 1, OpenFor: time.Second, OnStateChange: ch.record})
		p.down.Store(true)
		r.Allow(t.Context(), "k", tenPerMinute, 1)
		if r.State() != ratelimit.StateOpen {
			t.Fatal("not open")
		}
		time.Sleep(999 * time.Millisecond)
		r.Allow(t.Context(), "k", tenPerMinute, 1)
		if n := p.calls.Load(); n != 1 {
			t.Fatalf("primary called %d times before OpenFor passed, want 1", n)
		}
		// Trial fails: open again for another OpenFor.
		time.Sleep(time.Millisecond)
		if _, err := r.Allow(t.Context(), "k", tenPerMinute, 1); !errors.Is(err, errRedis) {
			t.Fatalf("failed trial: %v, want the primary's error", err)
		}
		if n := p.calls.Load(); n != 2 || r.State() != ratelimit.StateOpen {
			t.Fatalf("after a failed trial: %d calls, state %v; want 2, open", n, r.State())
		}
		time.Sleep(500 * time.Millisecond)
		r.Allow(t.Context(), "k", tenPerMinute, 1)
		if n := p.calls.Load(); n != 2 {
			t.Fatalf("primary called during the second open period")
		}
		// Trial succeeds: closed.
		time.Sleep(500 * time.Millisecond)
		p.down.Store(false)
		if d, err := r.Allow(t.Context(), "k", tenPerMinute, 1); err != nil || d.Fallback {
			t.Fatalf("good trial: %+v, %v", d, err)
		}
		if r.State() != ratelimit.StateClosed {
			t.Fatalf("state %v after a good trial, want closed", r.State())
		}
		if got := ch.list(); len(got) != 2 || !got[0] || got[1] {
			t.Fatalf("state changes %v, want [true false]", got)
		}
	})
}

// blocking is a primary whose calls wait until released.
type blocking struct {
	release chan struct{}
	calls   atomic.Int64
}

func (b *blocking) Allow(context.Context, string, credential.RatePolicy, int64) (ratelimit.Decision, error) {
	b.calls.Add(1)
	<-b.release
	return ratelimit.Decision{Allowed: true}, nil
}

// TestResilientOneTrial: while the trial is in flight, other calls do not
// reach the primary.
func TestResilientOneTrial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{}
		f.down.Store(true)
		b := &blocking{release: make(chan struct{})}
		var primary atomic.Pointer[ratelimit.Limiter]
		var l ratelimit.Limiter = f
		primary.Store(&l)
		r := ratelimit.NewResilient(switcher{&primary}, ratelimit.ResilientOptions{Threshold: 1, Fallback: memory.New(memory.Options{})})
		r.Allow(t.Context(), "k", tenPerMinute, 1)
		l2 := ratelimit.Limiter(b)
		primary.Store(&l2)
		time.Sleep(time.Second)
		go r.Allow(t.Context(), "k", tenPerMinute, 1)
		synctest.Wait()
		if r.State() != ratelimit.StateHalfOpen {
			t.Fatalf("state %v during the trial, want half-open", r.State())
		}
		for range 5 {
			if d, err := r.Allow(t.Context(), "k", tenPerMinute, 1); err != nil || !d.Fallback {
				t.Fatalf("during the trial: %+v, %v; want the fallback's decision", d, err)
			}
		}
		if n := b.calls.Load(); n != 1 {
			t.Fatalf("%d primary calls during the trial, want 1", n)
		}
		close(b.release)
		synctest.Wait()
		if r.State() != ratelimit.StateClosed {
			t.Fatalf("state %v after the trial, want closed", r.State())
		}
	})
}

type switcher struct {
	p *atomic.Pointer[ratelimit.Limiter]
}

func (s switcher) Allow(ctx context.Context, k string, p credential.RatePolicy, c int64) (ratelimit.Decision, error) {
	return (*s.p.Load()).Allow(ctx, k, p, c)
}

func TestResilientFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &flaky{}
		p.down.Store(true)
		r := ratelimit.NewResilient(p, ratelimit.ResilientOptions{Threshold: 2, Fallback: memory.New(memory.Options{})})
		allowed := 0
		for i := range 15 {
			d, err := r.Allow(t.Context(), "k", tenPerMinute, 1)
			if err != nil {
				t.Fatalf("call %d: %v, want the fallback to decide", i, err)
			}
			if !d.Fallback {
				t.Fatalf("call %d: decision not marked Fallback", i)
			}
			if d.Allowed {
				allowed++
			}
		}
		if allowed != 10 {
			t.Fatalf("fallback allowed %d of 15, want the policy's 10", allowed)
		}
		if n := p.calls.Load(); n != 2 {
			t.Fatalf("primary called %d times, want 2 (then open)", n)
		}
	})
}

// TestResilientUncounted: a bad policy or the caller's cancellation is not
// the primary's fault.
func TestResilientUncounted(t *testing.T) {
	r := ratelimit.NewResilient(memory.New(memory.Options{}), ratelimit.ResilientOptions{Threshold: 1})
	if _, err := r.Allow(t.Context(), "k", credential.RatePolicy{}, 1); !errors.Is(err, ratelimit.ErrInvalidPolicy) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	canceled := ratelimit.NewResilient(cancelled{}, ratelimit.ResilientOptions{Threshold: 1})
	canceled.Allow(ctx, "k", tenPerMinute, 1)
	if r.State() != ratelimit.StateClosed || canceled.State() != ratelimit.StateClosed {
		t.Fatalf("opened on errors that were not the primary's: %v, %v", r.State(), canceled.State())
	}
}

type cancelled struct{}

func (cancelled) Allow(ctx context.Context, _ string, _ credential.RatePolicy, _ int64) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, ctx.Err()
}

// TestResilientConcurrent: under -race, many callers while the primary
// flips between up and down.
func TestResilientConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &flaky{}
		r := ratelimit.NewResilient(p, ratelimit.ResilientOptions{Threshold: 3, OpenFor: 10 * time.Millisecond, Fallback: memory.New(memory.Options{}), OnStateChange: func(bool) {}})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 500 {
					if g == 0 && i%50 == 0 {
						p.down.Store(!p.down.Load())
					}
					if i%10 == 0 {
						time.Sleep(time.Millisecond)
					}
					if _, err := r.Allow(t.Context(), "k", credential.RatePolicy{Quota: 1 << 30, Window: time.Hour}, 1); err != nil {
						t.Error(err)
						return
					}
					_ = r.State()
				}
			})
		}
		wg.Wait()
	})
}

func BenchmarkResilientMemory(b *testing.B) {
	r := ratelimit.NewResilient(memory.New(memory.Options{}), ratelimit.ResilientOptions{})
	p := credential.RatePolicy{Quota: 1 << 40, Window: 1 << 50}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Allow(context.Background(), "k", p, 1)
		}
	})
}

func BenchmarkMemory(b *testing.B) {
	l := memory.New(memory.Options{})
	p := credential.RatePolicy{Quota: 1 << 40, Window: 1 << 50}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(context.Background(), "k", p, 1)
		}
	})
}
