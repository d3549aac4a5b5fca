package pipeline

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// invalidations are the pushed key changes a pipeline has heard of.
//
// Every cached entry is tagged with the watermark (the highest outbox
// sequence number heard) at the moment its upstream call started. Sequence
// order is commit order, so an entry tagged T was fetched after every change
// up to T had committed. A tombstone says "key K changed at seq S": an entry
// of K tagged below S may predate the change and is treated as a miss (and
// overwritten by the refetch), in L1 and in the shared cache alike, whichever
// sidecar wrote it. Nothing is evicted by key ID, so no index from key IDs to
// cache keys is needed.
type invalidations struct {
	watermark atomic.Int64
	// floor: entries tagged below it are all stale (set on a resync after
	// the stream was lost for too long).
	floor atomic.Int64
	n     atomic.Int64 // tombstones held; 0 skips the map on the hot path
	tombs sync.Map     // tombKey -> tomb
	// keep is how long a tombstone must outlive its receipt: the longest an
	// entry fetched before it can still be served (TTL + stale-if-error).
	keep time.Duration
	now  func() time.Time
	// fresh reports whether the stream is current; nil: no stream.
	fresh func() bool
}

type tombKey struct {
	tenant credential.Tenant
	id     credential.KeyID
}

type tomb struct {
	seq int64
	at  time.Time
}

// stale reports whether e may predate a change of its key.
func (iv *invalidations) stale(e *Entry) bool {
	if e.Tag < iv.floor.Load() {
		return true
	}
	if iv.n.Load() == 0 || e.Result.KeyID == "" {
		return false
	}
	t, ok := iv.tombs.Load(tombKey{e.Result.Tenant, e.Result.KeyID})
	return ok && e.Tag < t.(tomb).seq
}

// usable reports whether caches may be read: always without a stream, else
// only while the stream is current.
func (iv *invalidations) usable() bool { return iv.fresh == nil || iv.fresh() }

func (iv *invalidations) invalidate(tenant credential.Tenant, id credential.KeyID, seq int64) {
	k := tombKey{tenant, id}
	if old, loaded := iv.tombs.Swap(k, tomb{seq: seq, at: iv.now()}); !loaded {
		iv.n.Add(1)
	} else if o := old.(tomb); o.seq > seq {
		iv.tombs.Store(k, o) // out of order: keep the later change
	}
	iv.advance(seq)
}

func (iv *invalidations) advance(seq int64) {
	for {
		cur := iv.watermark.Load()
		if seq <= cur || iv.watermark.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// prune drops tombstones no cached entry can need any more.
func (iv *invalidations) prune() {
	cut := iv.now().Add(-iv.keep)
	iv.tombs.Range(func(k, v any) bool {
		if v.(tomb).at.Before(cut) && iv.tombs.CompareAndDelete(k, v) {
			iv.n.Add(-1)
		}
		return true
	})
}

// Invalidate implements invalidation.Applier: every cached verdict of the key
// fetched before seq is stale.
func (p *Pipeline) Invalidate(tenant credential.Tenant, id credential.KeyID, seq int64) {
	p.inv.invalidate(tenant, id, seq)
}

// Advance implements invalidation.Applier: every change up to seq is known.
func (p *Pipeline) Advance(seq int64) { p.inv.advance(seq) }

// UseStream makes cache reads depend on the invalidation stream: fresh
// reports whether it is current. Call it before serving.
func (p *Pipeline) UseStream(fresh func() bool) { p.inv.fresh = fresh }

// Resync is called when the stream is current again after having been lost
// for longer than its staleness bound: every entry fetched before now is
// dropped (in L1) or ignored (in the shared cache), since changes made during
// the gap may have been missed.
func (p *Pipeline) Resync() {
	p.inv.floor.Store(p.inv.watermark.Load())
	p.l1.Clear()
}

// Watermark is the highest outbox sequence number heard.
func (p *Pipeline) Watermark() int64 { return p.inv.watermark.Load() }

// Forget implements invalidation.Applier: the server dropped the
// invalidations up to seq after its retention, so verdicts tagged below seq
// can no longer be checked against them and are all stale.
func (p *Pipeline) Forget(seq int64) {
	for {
		cur := p.inv.floor.Load()
		if seq <= cur || p.inv.floor.CompareAndSwap(cur, seq) {
			return
		}
	}
}
