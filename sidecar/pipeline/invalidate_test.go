package pipeline_test

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/sidecar/pipeline"
)

var errRevoked = &credential.Error{Kind: credential.ErrRevoked, Reason: "API_KEY_REVOKED"}

func TestInvalidationEndsACachedAllow(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	up.set("key-two", valid("k2"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: time.Hour})
	authorize(p, presented("key-one"))
	authorize(p, presented("key-two"))

	up.set("key-one", valid("k1"), errRevoked)
	p.Invalidate(credential.DefaultTenant, "k1", 7)
	v := authorize(p, presented("key-one"))
	if !errors.Is(v.Err, credential.ErrRevoked) || v.Cache != extauthz.CacheMiss {
		t.Fatalf("after the invalidation: %+v", v)
	}
	// The fresh verdict is tagged after the change: a hit again.
	if v := authorize(p, presented("key-one")); !errors.Is(v.Err, credential.ErrRevoked) || v.Cache != extauthz.CacheHit {
		t.Fatalf("the refetched verdict: %+v", v)
	}
	// Other keys are untouched.
	if v := authorize(p, presented("key-two")); v.Err != nil || v.Cache != extauthz.CacheHit {
		t.Fatalf("another key: %+v", v)
	}
	if p.Watermark() != 7 {
		t.Fatalf("watermark = %d", p.Watermark())
	}
	// A late, older invalidation of the same key does not undo the newer.
	p.Invalidate(credential.DefaultTenant, "k1", 3)
	if v := authorize(p, presented("key-one")); v.Cache != extauthz.CacheHit {
		t.Fatalf("older invalidation re-staled the entry: %+v", v)
	}
}

func TestInvalidationReachesSharedEntries(t *testing.T) {
	addr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("TALOS_TEST_REDIS_ADDR is not set")
	}
	shared := redisStore(t, addr)
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	a := newPipeline(t, up, pipeline.Options{TTL: time.Hour, Shared: shared, SharedSecret: testSecret})
	b := newPipeline(t, up, pipeline.Options{TTL: time.Hour, Shared: shared, SharedSecret: testSecret})
	authorize(a, presented("key-one")) // in Redis, tagged 0

	up.set("key-one", valid("k1"), errRevoked)
	b.Invalidate(credential.DefaultTenant, "k1", 4)
	if v := authorize(b, presented("key-one")); !errors.Is(v.Err, credential.ErrRevoked) {
		t.Fatalf("b served the pre-revoke entry from Redis: %+v", v)
	}
	// b rewrote Redis with a verdict tagged 4; a, which has not heard of
	// the change yet, still has its own L1 entry until it hears.
	a.Invalidate(credential.DefaultTenant, "k1", 4)
	v := authorize(a, presented("key-one"))
	if !errors.Is(v.Err, credential.ErrRevoked) || v.Cache != extauthz.CacheHit {
		t.Fatalf("a after hearing: %+v (want the revoked verdict from Redis)", v)
	}
}

func TestNoCacheWhileTheStreamIsStale(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: time.Hour, StaleIfError: time.Hour})
	var fresh atomic.Bool
	fresh.Store(true)
	p.UseStream(fresh.Load)
	authorize(p, presented("key-one"))
	authorize(p, presented("key-one"))
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("calls = %d with a fresh stream", got)
	}

	fresh.Store(false)
	if v := authorize(p, presented("key-one")); v.Err != nil || v.Cache != extauthz.CacheMiss {
		t.Fatalf("stale stream: %+v", v)
	}
	up.down.Store(true)
	if v := authorize(p, presented("key-one")); !errors.Is(v.Err, credential.ErrUnavailable) {
		t.Fatalf("stale stream and upstream down must fail closed, got %+v", v)
	}

	up.down.Store(false)
	fresh.Store(true)
	p.Advance(10)
	p.Resync()
	before := up.calls.Load()
	if v := authorize(p, presented("key-one")); v.Err != nil || v.Cache != extauthz.CacheMiss {
		t.Fatalf("after resync: %+v", v)
	}
	if v := authorize(p, presented("key-one")); v.Cache != extauthz.CacheHit {
		t.Fatalf("after resync, second: %+v", v)
	}
	if got := up.calls.Load() - before; got != 1 {
		t.Fatalf("calls after resync = %d, want 1", got)
	}
}

func TestStaleServeNeverOutlivesAnInvalidation(t *testing.T) {
	clk := &clock{now: time.Now()}
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Hour, Now: clk.Now})
	authorize(p, presented("key-one"))
	p.Invalidate(credential.DefaultTenant, "k1", 2)
	up.down.Store(true)
	clk.Add(time.Minute)
	if v := authorize(p, presented("key-one")); v.Err == nil {
		t.Fatalf("an invalidated entry was served stale: %+v", v)
	}
}

// An invalidation heard while the upstream call of a stale-if-error
// candidate was failing must stop that entry from being served.
func TestNoStaleServeOfAKeyInvalidatedDuringTheCall(t *testing.T) {
	clk := &clock{now: time.Now()}
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Hour, Now: clk.Now})
	authorize(p, presented("key-one"))
	clk.Add(time.Minute) // past the TTL: the next check goes upstream
	up.down.Store(true)
	up.during = func() { p.Invalidate(credential.DefaultTenant, "k1", 9) }
	if v := authorize(p, presented("key-one")); v.Err == nil {
		t.Fatalf("served stale after hearing of the change: %+v", v)
	}
}

// When the server forgets invalidations (retention), verdicts tagged before
// them are misses: their tombstones may be gone.
func TestForgottenInvalidationsMakeOlderVerdictsStale(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	p := newPipeline(t, up, pipeline.Options{TTL: time.Hour})
	authorize(p, presented("key-one")) // tagged 0
	p.Advance(5)
	if v := authorize(p, presented("key-one")); v.Cache != extauthz.CacheHit {
		t.Fatalf("before: %+v", v)
	}
	p.Forget(3)
	if v := authorize(p, presented("key-one")); v.Cache != extauthz.CacheMiss {
		t.Fatalf("a verdict tagged below the forgotten seq was served: %+v", v)
	}
	if v := authorize(p, presented("key-one")); v.Cache != extauthz.CacheHit {
		t.Fatalf("the refetched verdict (tagged 5): %+v", v)
	}
	p.Forget(2) // never lowers the floor
	if v := authorize(p, presented("key-one")); v.Cache != extauthz.CacheHit {
		t.Fatalf("after a lower forget: %+v", v)
	}
}
