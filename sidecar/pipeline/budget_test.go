package pipeline_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/sidecar/pipeline"
)

// hungUpstream is a control plane that hangs: Verify blocks until release
// (or the caller's context ends), then answers like fakeUpstream.
type hungUpstream struct {
	*fakeUpstream
	hung    atomic.Bool
	release chan struct{}
}

func newHungUpstream() *hungUpstream {
	return &hungUpstream{fakeUpstream: newUpstream(), release: make(chan struct{})}
}

func (h *hungUpstream) Verify(ctx context.Context, p credential.Presented) (credential.Result, error) {
	if h.hung.Load() {
		h.calls.Add(1)
		select {
		case <-h.release:
		case <-ctx.Done():
			return credential.Result{}, &credential.Error{Kind: credential.ErrDeadlineExceeded, Reason: "GATEWAY_TIMEOUT"}
		}
		h.calls.Add(-1) // counted once, by fakeUpstream
	}
	return h.fakeUpstream.Verify(ctx, p)
}

// authorizeAsync starts a check; its verdict arrives on the channel.
func authorizeAsync(p *pipeline.Pipeline, pr credential.Presented) <-chan extauthz.Verdict {
	ch := make(chan extauthz.Verdict, 1)
	go func() { ch <- p.Authorize(context.Background(), pr) }()
	return ch
}

const budget = 200 * time.Millisecond

// TestHungUpstreamServesStaleWithinTheBudget: with the control plane hung, a
// cached allow past its TTL is answered STALE once the check budget passes,
// not after the upstream's timeout; later checks of the same key, while the
// call is still hanging, are answered at once; the call's eventual answer
// refreshes the cache.
func TestHungUpstreamServesStaleWithinTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newHungUpstream()
		up.set("key-one", valid("k1"), nil)
		p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Minute, CheckTimeout: budget})
		authorize(p, presented("key-one"))
		time.Sleep(11 * time.Second)
		up.hung.Store(true)

		// Envoy's own timeout, so that a sidecar that waits for the upstream
		// fails here instead of hanging.
		envoy, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		v := p.Authorize(envoy, presented("key-one"))
		if took := time.Since(start); v.Err != nil || v.Cache != extauthz.CacheStale || took != budget {
			t.Fatalf("first check during the hang: %+v after %v, want STALE after %v", v, took, budget)
		}
		start = time.Now()
		v = p.Authorize(envoy, presented("key-one"))
		if took := time.Since(start); v.Err != nil || v.Cache != extauthz.CacheStale || took != 0 {
			t.Fatalf("second check during the same hung call: %+v after %v, want STALE at once", v, took)
		}
		if got := up.calls.Load(); got != 2 {
			t.Fatalf("upstream calls = %d, want 2 (the warm-up and one shared call)", got)
		}
		if s := p.Stats(); s.StaleServed != 2 {
			t.Fatalf("stale served = %d, want 2", s.StaleServed)
		}

		// The control plane answers at last: the answer lands in L1.
		up.hung.Store(false)
		close(up.release)
		synctest.Wait()
		p.Wait()
		if v := authorize(p, presented("key-one")); v.Err != nil || v.Cache != extauthz.CacheHit {
			t.Fatalf("after the hang: %+v, want a HIT from the background refresh", v)
		}
		if got := up.calls.Load(); got != 2 {
			t.Fatalf("upstream calls = %d after the refresh, want 2", got)
		}
	})
}

// TestHungUpstreamWithoutACachedEntryFailsClosedAtTheBudget: a credential
// with nothing usable cached (never seen, or past its stale bound) is denied
// with ErrUnavailable, the sidecar's fail-closed answer, once the check
// budget has passed (not after the upstream's timeout and retries, which
// Envoy would not wait for); the upstream call goes on and its answer fills
// the cache for the next check.
func TestHungUpstreamWithoutACachedEntryFailsClosedAtTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newHungUpstream()
		up.set("key-one", valid("k1"), nil)
		up.set("key-two", valid("k2"), nil)
		// Past its stale bound too: not usable.
		p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Second, CheckTimeout: budget})
		authorize(p, presented("key-two"))
		time.Sleep(12 * time.Second)
		up.hung.Store(true)

		for _, k := range []string{"key-one", "key-two"} {
			start := time.Now()
			v := p.Authorize(t.Context(), presented(k))
			if took := time.Since(start); !errors.Is(v.Err, credential.ErrUnavailable) || took != budget {
				t.Fatalf("%s during the hang: %+v after %v, want ErrUnavailable after %v", k, v, took, budget)
			}
		}
		// A later check of the same key joins the call still hanging and
		// is denied at once.
		start := time.Now()
		if v := p.Authorize(t.Context(), presented("key-one")); !errors.Is(v.Err, credential.ErrUnavailable) || time.Since(start) != 0 {
			t.Fatalf("second check during the same hung call: %+v after %v", v, time.Since(start))
		}
		if s := p.Stats(); s.Undecided != 3 || s.StaleServed != 0 {
			t.Fatalf("stats = %+v, want 3 undecided, 0 stale", s)
		}

		// The control plane answers at last: the answers land in L1.
		close(up.release)
		synctest.Wait()
		p.Wait()
		for _, k := range []string{"key-one", "key-two"} {
			if v := authorize(p, presented(k)); v.Err != nil || v.Cache != extauthz.CacheHit {
				t.Fatalf("%s after the hang: %+v, want a HIT from the background call", k, v)
			}
		}

		// A caller's own deadline, when shorter, still ends its wait.
		up2 := newHungUpstream()
		up2.hung.Store(true)
		p2 := newPipeline(t, up2, pipeline.Options{CheckTimeout: budget})
		ctx, cancel := context.WithTimeout(t.Context(), budget/2)
		defer cancel()
		if v := p2.Authorize(ctx, presented("key-one")); !errors.Is(v.Err, credential.ErrDeadlineExceeded) {
			t.Fatalf("no entry, caller deadline: %+v", v)
		}
		close(up2.release)
	})
}

// TestHungUpstreamFlightsAreCapped: with the control plane hung, checks of
// ever new credentials hold at most MaxFlights upstream calls; a miss past
// the cap is denied at once, fail closed.
func TestHungUpstreamFlightsAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newHungUpstream()
		up.hung.Store(true)
		p := newPipeline(t, up, pipeline.Options{CheckTimeout: budget, MaxFlights: 2})
		for _, k := range []string{"key-one", "key-two"} {
			if v := p.Authorize(t.Context(), presented(k)); !errors.Is(v.Err, credential.ErrUnavailable) {
				t.Fatalf("%s: %+v", k, v)
			}
		}
		start := time.Now()
		if v := p.Authorize(t.Context(), presented("key-three")); !errors.Is(v.Err, credential.ErrUnavailable) || time.Since(start) != 0 {
			t.Fatalf("a third credential with two calls hanging: %+v after %v, want ErrUnavailable at once", v, time.Since(start))
		}
		if got, s := up.calls.Load(), p.Stats(); got != 2 || s.FlightsRefused != 1 {
			t.Fatalf("upstream calls = %d, refused = %d; want 2 and 1", got, s.FlightsRefused)
		}
		close(up.release)
		synctest.Wait()
		p.Wait()
	})
}

// TestRevocationDuringAHangWins: an invalidation heard while the control
// plane hangs stops the stale entry from being served, whether it arrives
// before the budget has passed or after some checks were already answered
// from it.
func TestRevocationDuringAHangWins(t *testing.T) {
	for _, after := range []bool{false, true} {
		name := map[bool]string{false: "before the budget", true: "after stale answers"}[after]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := newHungUpstream()
				up.set("key-one", valid("k1"), nil)
				p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Minute, CheckTimeout: budget})
				authorize(p, presented("key-one"))
				time.Sleep(11 * time.Second)
				up.hung.Store(true)

				if after {
					if v := p.Authorize(t.Context(), presented("key-one")); v.Cache != extauthz.CacheStale {
						t.Fatalf("before the revocation: %+v", v)
					}
				}
				ch := authorizeAsync(p, presented("key-one"))
				time.Sleep(budget / 2)
				up.set("key-one", valid("k1"), errRevoked)
				p.Invalidate(credential.DefaultTenant, "k1", 9)
				if after {
					// A check that started after the change.
					ch = authorizeAsync(p, presented("key-one"))
				}
				// Never the stale allow: denied, fail closed, at the budget.
				if v := <-ch; !errors.Is(v.Err, credential.ErrUnavailable) || v.Cache == extauthz.CacheStale {
					t.Fatalf("during the hang after the revocation: %+v, want ErrUnavailable", v)
				}
				up.hung.Store(false)
				close(up.release)
				synctest.Wait()
				p.Wait()
				if v := authorize(p, presented("key-one")); !errors.Is(v.Err, credential.ErrRevoked) {
					t.Fatalf("after the hang: %+v, want REVOKED", v)
				}
			})
		})
	}
}

// TestSlowUpstreamAnswerWithinTheBudgetIsUsed: an upstream that answers
// inside the budget is waited for; the stale entry is not served.
func TestSlowUpstreamAnswerWithinTheBudgetIsUsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.set("key-one", valid("k1"), nil)
		p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Minute, CheckTimeout: budget})
		authorize(p, presented("key-one"))
		time.Sleep(11 * time.Second)
		up.during = func() { time.Sleep(budget - time.Millisecond) }
		v := p.Authorize(t.Context(), presented("key-one"))
		if v.Err != nil || v.Cache != extauthz.CacheMiss {
			t.Fatalf("slow but in time: %+v, want MISS", v)
		}
	})
}
