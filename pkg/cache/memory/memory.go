// Package memory is the sidecar's in-process cache (L1): a generic,
// byte-budgeted cache on github.com/dgraph-io/ristretto/v2.
//
// Keys are strings that are already hashes (the caller derives them from the
// tenant and the credential with a keyed hash); this package never sees a
// credential. Every entry has a TTL and a cost, the approximate number of
// bytes it holds, and the cache keeps the sum of costs under Options.MaxBytes.
//
// The cache is best-effort. ristretto applies Sets asynchronously through a
// buffer and an admission policy (TinyLFU): under contention a Set may be
// dropped, and when the cache is full a new entry may be refused in favour
// of more frequently used ones. A Set that returned true may therefore still
// never become visible, and a new entry becomes visible to Get only after
// the buffer is drained (Wait forces that). Callers must treat a miss as
// normal and never depend on an entry being there.
//
// It imports ristretto and the standard library only. Cache is safe for
// concurrent use, except that Close must not race with other calls.
package memory

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Options configures a Cache. The zero value is not valid: MaxBytes is
// required.
type Options struct {
	// MaxBytes is the byte budget: the sum of the costs of the entries
	// kept. Required, > 0.
	MaxBytes int64
	// Metrics turns on ristretto's counters, reported by Stats. They cost a
	// few atomic adds per call.
	Metrics bool
}

// Sizing of ristretto's admission counters: about ten per expected entry,
// the entry count being estimated from the byte budget.
const (
	bytesPerEntry  = 200
	countersFactor = 10
	minCounters    = 1e4
	maxCounters    = 1e8
)

// Cache is an in-process cache of V values keyed by string. It is safe for
// concurrent use; Close must not be called concurrently with other methods.
// The zero value is not usable: build one with New.
type Cache[V any] struct {
	rc *ristretto.Cache[string, V]
}

// New returns a Cache with the byte budget o.MaxBytes. A MaxBytes <= 0 is an
// error. Call Close to stop its background goroutines.
func New[V any](o Options) (*Cache[V], error) {
	if o.MaxBytes <= 0 {
		return nil, errors.New("memory cache: MaxBytes must be positive")
	}
	rc, err := ristretto.NewCache(&ristretto.Config[string, V]{
		NumCounters: numCounters(o.MaxBytes),
		MaxCost:     o.MaxBytes,
		BufferItems: 64,
		Metrics:     o.Metrics,
		// Without this, ristretto adds ~56 bytes of its own bookkeeping to
		// every entry's cost; costs here are already byte estimates, and
		// with the default a budget fills up far earlier than sized
		// (reference/deps.md measured 3.5% of 1M keys resident).
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("memory cache: %w", err)
	}
	return &Cache[V]{rc: rc}, nil
}

// numCounters sizes the TinyLFU counters at ten per expected entry,
// assuming ~200 bytes per entry, clamped to [1e4, 1e8].
func numCounters(maxBytes int64) int64 {
	n := maxBytes / bytesPerEntry * countersFactor
	return min(max(n, minCounters), maxCounters)
}

// Get returns the value under key and whether there was one that has not
// expired. It does not allocate.
func (c *Cache[V]) Get(key string) (V, bool) {
	return c.rc.Get(key)
}

// Set stores v under key for ttl with the given cost (approximate bytes of
// the entry; a cost < 1 counts as 1). It reports whether the Set was
// accepted into ristretto's buffer: false means it was dropped (contention
// or a closed cache) or that ttl <= 0, which is never stored since a cached
// verdict must expire. true does not promise the entry will be kept (the
// admission policy may refuse it, and an entry costing more than MaxBytes
// always is): see the package comment. Replacing an existing
// key takes effect at once; a new key becomes visible once the buffer is
// applied (see Wait).
func (c *Cache[V]) Set(key string, v V, cost int64, ttl time.Duration) bool {
	if ttl <= 0 {
		return false
	}
	return c.rc.SetWithTTL(key, v, max(cost, 1), ttl)
}

// Delete removes key at once. Deleting a missing key is a no-op.
func (c *Cache[V]) Delete(key string) {
	c.rc.Del(key)
}

// Clear removes every entry and resets the admission counters and Stats.
// It is not atomic: Sets racing with it may survive or be lost.
func (c *Cache[V]) Clear() {
	c.rc.Clear()
}

// Wait blocks until every Set that returned before the call has been
// applied (admitted or rejected), so that admitted entries are visible to
// Get. Tests need it; production code does not.
func (c *Cache[V]) Wait() {
	c.rc.Wait()
}

// Used returns the sum of the costs of the entries held, in bytes.
func (c *Cache[V]) Used() int64 {
	return c.rc.MaxCost() - c.rc.RemainingCost()
}

// Stats are ristretto's counters since New or the last Clear. They are all
// zero unless Options.Metrics is set.
type Stats struct {
	Hits, Misses uint64
	// KeysAdded and KeysEvicted count admissions and evictions (expired
	// entries removed by the cleaner count as evicted).
	KeysAdded, KeysEvicted uint64
	// SetsDropped counts Sets lost to contention; SetsRejected those
	// refused by the admission policy.
	SetsDropped, SetsRejected uint64
	CostAdded, CostEvicted    uint64
}

// Stats returns the cache's counters.
func (c *Cache[V]) Stats() Stats {
	m := c.rc.Metrics // nil when metrics are off; its methods return 0
	return Stats{
		Hits:         m.Hits(),
		Misses:       m.Misses(),
		KeysAdded:    m.KeysAdded(),
		KeysEvicted:  m.KeysEvicted(),
		SetsDropped:  m.SetsDropped(),
		SetsRejected: m.SetsRejected(),
		CostAdded:    m.CostAdded(),
		CostEvicted:  m.CostEvicted(),
	}
}

// Close empties the cache and stops its goroutines. Afterwards Get misses
// and Set returns false. Calling Close twice is safe; calling it while other
// goroutines use the cache is not.
func (c *Cache[V]) Close() {
	c.rc.Close()
}
