package outbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/outbox"
	"github.com/talos-project/talos/pkg/credential"
)

// memSource is an outbox in memory; fail makes reads fail.
type memSource struct {
	mu     sync.Mutex
	events []credential.Event
	fail   bool
}

func (m *memSource) EventsSince(_ context.Context, cursor int64, limit int) ([]credential.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return nil, errors.New("database down")
	}
	var out []credential.Event
	for _, e := range m.events {
		if e.Seq > cursor && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *memSource) add(t time.Time, types ...credential.EventType) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ty := range types {
		seq := int64(len(m.events) + 1)
		m.events = append(m.events, credential.Event{Seq: seq, Tenant: credential.DefaultTenant, KeyID: credential.KeyID("k"), Type: ty, Time: t})
	}
}

type collector struct {
	mu   sync.Mutex
	seqs []int64
}

func (c *collector) sink(evs []credential.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range evs {
		c.seqs = append(c.seqs, e.Seq)
	}
}

func (c *collector) got() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.seqs...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTailsInOrderSkippingOldHistory(t *testing.T) {
	now := time.Now()
	src := &memSource{}
	src.add(now.Add(-time.Hour), credential.EventRevoked, credential.EventRevoked) // 1, 2: too old
	src.add(now, credential.EventRevoked, credential.EventUpdated)                 // 3, 4
	var c collector
	tl := outbox.New(src, c.sink, outbox.Options{Interval: time.Hour, Batch: 3, Horizon: 10 * time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tl.Run(ctx) }()
	waitFor(t, "history read", func() bool { return tl.Cursor() == 4 })
	if got := c.got(); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("sink got %v, want [3 4]", got)
	}
	// Later events are handed over whatever their age, as soon as Wake.
	src.add(now.Add(-time.Hour), credential.EventDeleted) // 5
	tl.Wake()
	waitFor(t, "woken read", func() bool { return tl.Cursor() == 5 })
	if got := c.got(); len(got) != 3 || got[2] != 5 {
		t.Fatalf("sink got %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPollsWithoutWake(t *testing.T) {
	src := &memSource{}
	var c collector
	tl := outbox.New(src, c.sink, outbox.Options{Interval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tl.Run(ctx)
	src.add(time.Now(), credential.EventRevoked)
	waitFor(t, "polled read", func() bool { return len(c.got()) == 1 })
}

func TestSurvivesStoreErrors(t *testing.T) {
	src := &memSource{fail: true}
	var c collector
	tl := outbox.New(src, c.sink, outbox.Options{Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tl.Run(ctx)
	src.add(time.Now(), credential.EventRevoked)
	tl.Wake()
	src.mu.Lock()
	src.fail = false
	src.mu.Unlock()
	waitFor(t, "read after recovery", func() bool { return len(c.got()) == 1 })
}

// countingSource counts reads, to show that Prime does not scan history.
type countingSource struct {
	memSource
	reads int
}

func (c *countingSource) EventsSince(ctx context.Context, cursor int64, limit int) ([]credential.Event, error) {
	c.reads++
	return c.memSource.EventsSince(ctx, cursor, limit)
}

func TestPrimeSkipsOldHistoryWithoutReadingIt(t *testing.T) {
	now := time.Now()
	src := &countingSource{}
	for i := range 5000 {
		src.add(now.Add(-time.Hour+time.Duration(i)*time.Millisecond), credential.EventRevoked)
	}
	src.add(now, credential.EventRevoked, credential.EventDeleted) // 5001, 5002
	var c collector
	tl := outbox.New(src, c.sink, outbox.Options{Batch: 100, Horizon: 10 * time.Minute})
	if err := tl.Prime(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.got(); len(got) != 2 || got[0] != 5001 || got[1] != 5002 {
		t.Fatalf("sink got %v, want [5001 5002]", got)
	}
	if tl.Cursor() != 5002 {
		t.Fatalf("cursor = %d", tl.Cursor())
	}
	if src.reads > 40 {
		t.Fatalf("%d reads to skip 5000 old events; want a search, not a scan", src.reads)
	}

	// Nothing old: nothing skipped.
	src2 := &memSource{}
	src2.add(now, credential.EventRevoked, credential.EventRevoked)
	var c2 collector
	tl2 := outbox.New(src2, c2.sink, outbox.Options{Horizon: 10 * time.Minute})
	if err := tl2.Prime(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c2.got(); len(got) != 2 {
		t.Fatalf("sink got %v", got)
	}
}
