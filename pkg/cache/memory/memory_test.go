package memory_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/cache/memory"
)

type entry struct {
	keyID string
	n     int
}

func newTestCache[V any](t testing.TB, o memory.Options) *memory.Cache[V] {
	t.Helper()
	c, err := memory.New[V](o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// key returns a 32-byte hash key, the shape callers use.
func key(i int) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	h := sha256.Sum256(b[:])
	return string(h[:])
}

// mustSet stores v, retrying a Set that ristretto dropped under contention.
func mustSet[V any](t testing.TB, c *memory.Cache[V], k string, v V, cost int64, ttl time.Duration) {
	t.Helper()
	for range 100 {
		if c.Set(k, v, cost, ttl) {
			return
		}
		c.Wait()
	}
	t.Fatalf("Set kept being dropped")
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNew_Invalid(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, -1} {
		if _, err := memory.New[int](memory.Options{MaxBytes: n}); err == nil {
			t.Errorf("New(MaxBytes: %d): got nil error, want one", n)
		}
	}
}

func TestCache_SetGet(t *testing.T) {
	t.Parallel()
	c := newTestCache[*entry](t, memory.Options{MaxBytes: 1 << 20})
	if _, ok := c.Get(key(1)); ok {
		t.Fatal("Get on an empty cache: got a hit")
	}
	want := &entry{keyID: "k1", n: 1}
	mustSet(t, c, key(1), want, 100, time.Minute)
	c.Wait()
	got, ok := c.Get(key(1))
	if !ok || got != want {
		t.Fatalf("Get after Set+Wait = %v, %v; want %v, true", got, ok, want)
	}
	if _, ok := c.Get(key(2)); ok {
		t.Error("Get of another key: got a hit")
	}

	t.Run("overwrite", func(t *testing.T) {
		next := &entry{keyID: "k1", n: 2}
		mustSet(t, c, key(1), next, 100, time.Minute)
		c.Wait()
		if got, ok := c.Get(key(1)); !ok || got != next {
			t.Fatalf("Get after overwrite = %v, %v; want %v, true", got, ok, next)
		}
	})
	t.Run("delete", func(t *testing.T) {
		c.Delete(key(1))
		if _, ok := c.Get(key(1)); ok {
			t.Fatal("Get after Delete: got a hit")
		}
		c.Delete(key(99)) // missing key: no-op
	})
}

func TestCache_SetRejectsNonPositiveTTL(t *testing.T) {
	t.Parallel()
	c := newTestCache[int](t, memory.Options{MaxBytes: 1 << 20})
	for _, ttl := range []time.Duration{0, -time.Second} {
		if c.Set(key(1), 1, 1, ttl) {
			t.Errorf("Set with ttl %v = true, want false", ttl)
		}
	}
	c.Wait()
	if _, ok := c.Get(key(1)); ok {
		t.Error("an entry without a positive TTL was stored")
	}
}

func TestCache_TTLExpiry(t *testing.T) {
	t.Parallel()
	c := newTestCache[int](t, memory.Options{MaxBytes: 1 << 20})
	const ttl = 100 * time.Millisecond
	start := time.Now()
	mustSet(t, c, key(1), 7, 1, ttl)
	mustSet(t, c, key(2), 8, 1, time.Hour)
	c.Wait()
	if _, ok := c.Get(key(1)); !ok && time.Since(start) < ttl {
		t.Fatal("entry missing before its TTL passed")
	}
	eventually(t, "entry expired", func() bool {
		_, ok := c.Get(key(1))
		return !ok
	})
	if v, ok := c.Get(key(2)); !ok || v != 8 {
		t.Errorf("long-lived entry = %v, %v; want 8, true", v, ok)
	}
}

func TestCache_Clear(t *testing.T) {
	t.Parallel()
	c := newTestCache[int](t, memory.Options{MaxBytes: 1 << 20, Metrics: true})
	for i := range 100 {
		mustSet(t, c, key(i), i, 10, time.Minute)
	}
	c.Wait()
	c.Clear()
	for i := range 100 {
		if _, ok := c.Get(key(i)); ok {
			t.Fatalf("key %d survived Clear", i)
		}
	}
	if u := c.Used(); u != 0 {
		t.Errorf("Used after Clear = %d, want 0", u)
	}
	// The cache keeps working after Clear.
	mustSet(t, c, key(1), 1, 10, time.Minute)
	c.Wait()
	if _, ok := c.Get(key(1)); !ok {
		t.Error("Set after Clear is not visible")
	}
}

func TestCache_ByteBudget(t *testing.T) {
	t.Parallel()
	const (
		budget = 64 << 10 // 64 KiB
		cost   = 1 << 10  // 1 KiB per entry: the budget holds 64
		n      = 1000     // ~1 MiB offered
	)
	c := newTestCache[int](t, memory.Options{MaxBytes: budget})
	for i := range n {
		c.Set(key(i), i, cost, time.Minute) // drops are fine here
	}
	c.Wait()
	if u := c.Used(); u > budget {
		t.Errorf("Used = %d, over the budget of %d", u, budget)
	}
	resident := 0
	for i := range n {
		if _, ok := c.Get(key(i)); ok {
			resident++
		}
	}
	if resident == 0 || resident*cost > budget {
		t.Errorf("%d of %d entries of %d bytes resident; want between 1 and %d", resident, n, cost, budget/cost)
	}

	t.Run("entry over budget is refused", func(t *testing.T) {
		c.Set(key(-1), -1, budget+1, time.Minute)
		c.Wait()
		if _, ok := c.Get(key(-1)); ok {
			t.Error("an entry costing more than the budget was kept")
		}
	})
}

// TestCache_ManySmallEntriesStayResident guards against ristretto's internal
// cost: with IgnoreInternalCost off, each entry would cost ~56 bytes more
// and most of these would be evicted (reference/deps.md).
func TestCache_ManySmallEntriesStayResident(t *testing.T) {
	t.Parallel()
	const (
		n    = 100_000
		cost = 64
	)
	c := newTestCache[int32](t, memory.Options{MaxBytes: n * cost, Metrics: true})
	for i := range n {
		mustSet(t, c, key(i), int32(i), cost, time.Hour)
	}
	c.Wait()
	missing := 0
	for i := range n {
		if v, ok := c.Get(key(i)); !ok || v != int32(i) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d entries missing with a budget that holds them all (stats %+v)", missing, n, c.Stats())
	}
	if u := c.Used(); u != n*cost {
		t.Errorf("Used = %d, want %d", u, n*cost)
	}
}

func TestCache_Stats(t *testing.T) {
	t.Parallel()
	c := newTestCache[int](t, memory.Options{MaxBytes: 1 << 20, Metrics: true})
	mustSet(t, c, key(1), 1, 1, time.Minute)
	c.Wait()
	c.Get(key(1))
	c.Get(key(1))
	c.Get(key(2))
	s := c.Stats()
	if s.Hits != 2 || s.Misses != 1 || s.KeysAdded != 1 {
		t.Errorf("Stats = %+v; want 2 hits, 1 miss, 1 key added", s)
	}

	off := newTestCache[int](t, memory.Options{MaxBytes: 1 << 20})
	off.Get(key(1))
	if s := off.Stats(); s != (memory.Stats{}) {
		t.Errorf("Stats with metrics off = %+v, want zero", s)
	}
}

func TestCache_Close(t *testing.T) {
	t.Parallel()
	c, err := memory.New[int](memory.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, key(1), 1, 1, time.Minute)
	c.Wait()
	c.Close()
	if _, ok := c.Get(key(1)); ok {
		t.Error("Get after Close: got a hit")
	}
	if c.Set(key(2), 2, 1, time.Minute) {
		t.Error("Set after Close = true, want false")
	}
	c.Wait()
	c.Delete(key(1))
	c.Close() // twice is fine
}

func TestCache_Concurrent(t *testing.T) {
	t.Parallel()
	c := newTestCache[*entry](t, memory.Options{MaxBytes: 1 << 20})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := key(i % 50)
				switch i % 4 {
				case 0:
					c.Set(k, &entry{keyID: fmt.Sprint(g), n: i}, 100, time.Minute)
				case 1:
					c.Delete(k)
				default:
					if v, ok := c.Get(k); ok && v == nil {
						t.Error("hit with a nil value")
					}
				}
			}
		})
	}
	wg.Wait()
}
