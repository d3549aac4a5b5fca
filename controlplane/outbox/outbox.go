// Package outbox tails the events table, the outbox every key change writes
// in its own transaction, and hands new events, in sequence order, to a sink
// (the xDS server). Sequence order is commit order (the store's LockEvents),
// so a cursor never skips an event.
//
// Each control-plane replica runs its own tailer, so a revoke committed
// through replica A reaches sidecars connected to replica B. A tailer wakes up
// at once when its own process commits (Wake, from the store's commit hook)
// and polls at a short interval for commits of other replicas.
package outbox

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// Source reads the outbox: up to limit events with Seq > cursor, in Seq
// order (store.Store.EventsSince).
type Source interface {
	EventsSince(ctx context.Context, cursor int64, limit int) ([]credential.Event, error)
}

// Sink receives each batch of new events, in order.
type Sink func(events []credential.Event)

// Options configure a Tailer.
type Options struct {
	// Interval between polls when nothing woke the tailer. Default 50ms.
	Interval time.Duration
	// Batch is the page size of one read. Default 1000.
	Batch int
	// Horizon: events older than this when first read are skipped (the
	// sink's consumers have long forgotten the verdicts they would
	// invalidate). Default 10m; it should equal the xDS retention.
	Horizon time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// Tailer follows the outbox. Create it with New, then Run it.
type Tailer struct {
	src    Source
	sink   Sink
	o      Options
	wake   chan struct{}
	cursor atomic.Int64
	reads  atomic.Uint64
	// lastOK is when a read last succeeded (unix nanos).
	lastOK atomic.Int64
	// caughtUp is set once the history has been read; Run's goroutine only.
	caughtUp bool
}

// New returns a Tailer starting at the beginning of the outbox.
func New(src Source, sink Sink, o Options) *Tailer {
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Horizon <= 0 {
		o.Horizon = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tailer{src: src, sink: sink, o: o, wake: make(chan struct{}, 1)}
}

// Wake makes the tailer read now instead of at its next poll. It never
// blocks; call it after a commit that appended events.
func (t *Tailer) Wake() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// readTimeout bounds one read, so that a database that stops answering (a
// half-open connection) shows as a failing tailer instead of a silent one.
const readTimeout = 5 * time.Second

// Live reports whether a read succeeded within the last d: a tailer that
// cannot read the outbox must not let its consumers believe they are current.
func (t *Tailer) Live(d time.Duration) bool {
	last := t.lastOK.Load()
	return last != 0 && t.o.Now().Sub(time.Unix(0, last)) <= d
}

// Cursor is the sequence number of the last event handed to the sink (or
// skipped as too old).
func (t *Tailer) Cursor() int64 { return t.cursor.Load() }

// Prime reads the retained outbox once, before the sink's consumers are
// served, so that a control plane that restarts never presents a stream
// without the invalidations it should carry. Run then continues from there.
// It skips the history older than the horizon without reading it (see
// seek), so a long outbox costs a few dozen index lookups, not a scan.
func (t *Tailer) Prime(ctx context.Context) error {
	if err := t.seek(ctx); err != nil {
		return err
	}
	return t.drain(ctx)
}

// seek moves the cursor to just before the first event inside the horizon.
// Event times grow with their sequence numbers (up to clock steps between
// replicas, which at worst replay a few extra events), so an exponential
// then binary search over "the first event after cursor c" finds it with
// O(log n) primary-key lookups.
func (t *Tailer) seek(ctx context.Context) error {
	old := t.o.Now().Add(-t.o.Horizon)
	// firstAfter returns the first event after c; ok false past the end.
	firstAfter := func(c int64) (credential.Event, bool, error) {
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		defer cancel()
		evs, err := t.src.EventsSince(rctx, c, 1)
		if err != nil || len(evs) == 0 {
			return credential.Event{}, false, err
		}
		return evs[0], true, nil
	}
	// recent reports whether the first event after c is inside the horizon
	// (or there is none): the cursor may move to c.
	recent := func(c int64) (bool, error) {
		e, ok, err := firstAfter(c)
		return !ok || !e.Time.Before(old), err
	}
	if ok, err := recent(0); err != nil || ok {
		return err
	}
	lo, hi := int64(0), int64(1) // recent(lo) is false; find hi with recent(hi)
	for {
		ok, err := recent(hi)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := recent(mid)
		if err != nil {
			return err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	t.cursor.Store(hi)
	return nil
}

// Run tails until ctx ends. Store errors are logged and retried with backoff
// up to ten poll intervals; they never end the loop.
func (t *Tailer) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-t.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		if err := t.drain(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			if failures == 1 || failures%100 == 0 {
				t.o.Logger.Warn("reading the outbox failed; retrying", slog.Any("error", err), slog.Int("failures", failures))
			}
			timer.Reset(t.o.Interval * time.Duration(min(failures+1, 10)))
			continue
		}
		if failures > 0 {
			t.o.Logger.Info("reading the outbox again", slog.Int("after_failures", failures))
			failures = 0
		}
		timer.Reset(t.o.Interval)
	}
}

// drain reads and hands over every event past the cursor. Until the first
// drain has caught up, events older than the horizon are skipped.
func (t *Tailer) drain(ctx context.Context) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		evs, err := t.src.EventsSince(rctx, t.cursor.Load(), t.o.Batch)
		cancel()
		t.reads.Add(1)
		if err != nil {
			return err
		}
		t.lastOK.Store(t.o.Now().UnixNano())
		if len(evs) == 0 {
			t.caughtUp = true
			return nil
		}
		n, last := len(evs), evs[len(evs)-1].Seq
		if !t.caughtUp {
			old := t.o.Now().Add(-t.o.Horizon)
			i := 0
			for i < len(evs) && evs[i].Time.Before(old) {
				i++
			}
			evs = evs[i:]
		}
		if len(evs) > 0 {
			t.sink(evs)
		}
		t.cursor.Store(last)
		if n < t.o.Batch {
			t.caughtUp = true
			return nil
		}
	}
}
