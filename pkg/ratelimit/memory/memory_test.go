package memory_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
	"github.com/talos-project/talos/pkg/ratelimit/ratelimittest"
)

// clock is a fake clock that stands still until advanced.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) (ratelimit.Limiter, func(time.Duration)) {
		c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		return memory.New(memory.Options{Now: c.Now}), c.Advance
	})
}

var perMinute = credential.RatePolicy{Quota: 10, Window: time.Minute}

// TestBounded: a caller rotating through ten times more keys than the table
// holds never grows it past MaxKeys.
func TestBounded(t *testing.T) {
	for _, max := range []int{100, 5000} {
		l := memory.New(memory.Options{MaxKeys: max})
		for i := range 10 * max {
			if _, err := l.Allow(t.Context(), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), perMinute, 1); err != nil {
				t.Fatal(err)
			}
			if n := l.Len(); n > max {
				t.Fatalf("MaxKeys %d: %d keys after %d inserts", max, n, i+1)
			}
		}
		if got := l.Evicted(); got != int64(9*max) && max == 100 {
			t.Errorf("MaxKeys %d: evicted %d, want %d", max, got, 9*max)
		}
	}
}

// TestExpiredStateIsDropped: once a key's budget is full again it holds no
// memory, without any sweeper goroutine.
func TestExpiredStateIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memory.New(memory.Options{MaxKeys: 100})
		for i := range 50 {
			l.Allow(t.Context(), fmt.Sprint(i), perMinute, 3)
		}
		if n := l.Len(); n != 50 {
			t.Fatalf("Len = %d, want 50", n)
		}
		time.Sleep(18 * time.Second) // 3 units at 6s each: every budget is full again
		l.Allow(t.Context(), "other", perMinute, 1)
		if n := l.Len(); n != 1 {
			t.Fatalf("Len after refill = %d, want 1 (only the new key)", n)
		}
		if l.Evicted() != 0 {
			t.Fatalf("evicted %d live keys, want 0", l.Evicted())
		}
	})
}

// TestEvictsClosestToFull: a full table forgets the key with the least state
// first, so a key that is being limited keeps its state while others come and
// go.
func TestEvictsClosestToFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memory.New(memory.Options{MaxKeys: 10})
		for range perMinute.Quota {
			l.Allow(t.Context(), "attacker", perMinute, 1)
		}
		for i := range 100 {
			time.Sleep(100 * time.Millisecond)
			l.Allow(t.Context(), fmt.Sprint("passer-by-", i), perMinute, 1)
		}
		// 10s later one unit has come back; a forgotten key would have all 10.
		if d, _ := l.Allow(t.Context(), "attacker", perMinute, 0); d.Remaining != 1 {
			t.Fatalf("limited key has %d remaining after 10s, want 1: it was forgotten while the table churned", d.Remaining)
		}
		if l.Len() > 10 {
			t.Fatalf("Len = %d, want at most 10", l.Len())
		}
	})
}

// TestMemoryPerKey reports the heap held per tracked key, for the docs.
func TestMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a full table")
	}
	const n = memory.DefaultMaxKeys
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := memory.New(memory.Options{})
	for i := range n {
		key := ratelimit.AddrKey(netipFrom(i))
		if _, err := l.Allow(t.Context(), "self-revoke/"+key, perMinute, 1); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d keys: %.0f bytes per key, %.1f MiB in all", l.Len(), per, per*n/(1<<20))
	if per > 400 {
		t.Errorf("%.0f bytes per key; the documented bound assumes at most 400", per)
	}
	runtime.KeepAlive(l)
}
