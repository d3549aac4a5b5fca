// Package memory is the in-process ratelimit.Limiter: GCRA state in a
// fixed-size table, so that callers rotating through keys (client
// addresses, say) cannot grow it without bound.
//
// The table is split into shards chosen by a randomly seeded hash, each a map
// plus a min-heap ordered by TAT. A key whose budget is full again has no
// state and is dropped as soon as any call on its shard sees it; when a shard
// is full, the key whose budget is closest to full is forgotten first (it has
// the least left to lose). Forgetting a key that is still limited gives it a
// fresh budget, so MaxKeys should exceed the number of addresses one attacker
// controls; an attacker who has that many gets that many budgets anyway.
//
// State is per process: replicas each limit on their own.
package memory

import (
	"container/heap"
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// DefaultMaxKeys is the table size when Options.MaxKeys is zero.
const DefaultMaxKeys = 100_000

const shardCount = 32

// Options configure a Limiter. The zero value is usable.
type Options struct {
	// MaxKeys bounds the number of keys with state; DefaultMaxKeys when zero.
	MaxKeys int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Limiter is a bounded in-memory ratelimit.Limiter. It is safe for concurrent
// use. Create it with New.
type Limiter struct {
	seed    maphash.Seed
	shards  []shard
	now     func() time.Time
	evicted atomic.Int64
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns an empty Limiter.
func New(opts Options) *Limiter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := shardCount
	if opts.MaxKeys < 32*shardCount {
		n = 1
	}
	l := &Limiter{seed: maphash.MakeSeed(), shards: make([]shard, n), now: opts.Now}
	for i := range l.shards {
		l.shards[i] = shard{max: opts.MaxKeys / n, idx: map[string]int{}}
	}
	return l
}

// Allow implements ratelimit.Limiter. It fails only with
// ratelimit.ErrInvalidPolicy.
func (l *Limiter) Allow(_ context.Context, key string, p credential.RatePolicy, cost int64) (ratelimit.Decision, error) {
	if err := ratelimit.Check(p, cost); err != nil {
		return ratelimit.Decision{}, err
	}
	sh := &l.shards[0]
	if len(l.shards) > 1 {
		sh = &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := l.now()
	sh.expire(now)
	i, ok := sh.idx[key]
	var tat time.Time
	if ok {
		tat = sh.h[i].tat
	}
	next, d := ratelimit.GCRA(tat, now, p, cost)
	switch {
	case !next.After(now):
		if ok {
			heap.Remove(sh, i)
		}
	case ok:
		sh.h[i].tat = next
		heap.Fix(sh, i)
	default:
		if len(sh.h) >= sh.max {
			heap.Pop(sh)
			l.evicted.Add(1)
		}
		heap.Push(sh, entry{key: key, tat: next})
	}
	return d, nil
}

// Len is the number of keys with state.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.h)
		sh.mu.Unlock()
	}
	return n
}

// Evicted counts keys forgotten while still limited because their shard was
// full: each one got its budget back early.
func (l *Limiter) Evicted() int64 { return l.evicted.Load() }

type entry struct {
	key string
	tat time.Time
}

// shard is a map from key to heap position plus a min-heap by TAT; it
// implements heap.Interface.
type shard struct {
	mu  sync.Mutex
	max int
	idx map[string]int
	h   []entry
}

// expire drops every key whose budget is full at now.
func (s *shard) expire(now time.Time) {
	for len(s.h) > 0 && !s.h[0].tat.After(now) {
		heap.Pop(s)
	}
}

func (s *shard) Len() int           { return len(s.h) }
func (s *shard) Less(i, j int) bool { return s.h[i].tat.Before(s.h[j].tat) }
func (s *shard) Swap(i, j int) {
	s.h[i], s.h[j] = s.h[j], s.h[i]
	s.idx[s.h[i].key] = i
	s.idx[s.h[j].key] = j
}

func (s *shard) Push(x any) {
	e := x.(entry)
	s.idx[e.key] = len(s.h)
	s.h = append(s.h, e)
}

func (s *shard) Pop() any {
	e := s.h[len(s.h)-1]
	s.h[len(s.h)-1] = entry{}
	s.h = s.h[:len(s.h)-1]
	delete(s.idx, e.key)
	return e
}
