package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// errExhausted ends a run: the workload has no request with this sequence
// number (every unique key was used).
var errExhausted = errors.New("workload exhausted")

// op sends request number seq (0, 1, 2, … across all workers) and waits for
// its answer. class indexes the load's classes (0 when there is one); a
// non-nil error other than errExhausted counts the request as failed.
type op func(ctx context.Context, seq uint64) (class int, err error)

// loadSpec is one measured point.
type loadSpec struct {
	// workers is the number of concurrent requests of a closed loop, and
	// the most that can be in flight in an open loop.
	workers int
	// rate is the fixed request rate of an open loop; 0 means a closed loop
	// (every worker sends its next request when the previous one answers).
	rate float64
	// warmup precedes the measured duration; its requests are not recorded.
	warmup   time.Duration
	duration time.Duration
	// maxOps bounds the number of requests (unique keys); 0 for none. An
	// open loop with maxOps sends min(maxOps, rate·(warmup+duration)).
	maxOps uint64
	// classes name the request classes of op; nil for one class.
	classes []string
}

// loadResult is what a run measured. Latencies are in microseconds.
type loadResult struct {
	requests, errors uint64
	firstError       string
	elapsed          time.Duration // the measured window
	hist             *hdrhistogram.Histogram
	service          *hdrhistogram.Histogram // from the actual send; differs from hist only in open loops
	classHists       []*hdrhistogram.Histogram
	classCounts      []uint64
	exhausted        bool // the run ended because maxOps was reached
	unsent           uint64
}

// merge adds the requests of b (a later run of the same load) to r.
func (r *loadResult) merge(b loadResult) {
	r.requests += b.requests
	r.errors += b.errors
	r.unsent += b.unsent
	r.elapsed += b.elapsed
	r.exhausted = r.exhausted || b.exhausted
	if r.firstError == "" {
		r.firstError = b.firstError
	}
	r.hist.Merge(b.hist)
	r.service.Merge(b.service)
	for i := range r.classHists {
		r.classHists[i].Merge(b.classHists[i])
		r.classCounts[i] += b.classCounts[i]
	}
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// Latencies are recorded in microseconds from 1 µs to 2 min at 3
// significant digits.
const (
	histMin    = 1
	histMax    = 120_000_000
	histDigits = 3
	histShards = 16
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// recorder collects latencies from many goroutines into sharded
// histograms (an HDR histogram is not safe for concurrent use).
type recorder struct {
	from    time.Time // completions of requests started earlier are not recorded
	classes int
	shards  [histShards]struct {
		mu      sync.Mutex
		all     *hdrhistogram.Histogram
		service *hdrhistogram.Histogram
		byClass []*hdrhistogram.Histogram
		counts  []uint64
		n, errs uint64
		first   string
		last    time.Time
		_       [64]byte
	}
}

func newRecorder(from time.Time, classes int) *recorder {
	r := &recorder{from: from, classes: max(classes, 1)}
	for i := range r.shards {
		s := &r.shards[i]
		s.all, s.service = newHist(), newHist()
		s.counts = make([]uint64, r.classes)
		for range r.classes {
			s.byClass = append(s.byClass, newHist())
		}
	}
	return r
}

// record adds one request: intended is when it should have been sent, sent
// when it was, done when its answer arrived.
func (r *recorder) record(worker int, intended, sent, done time.Time, class int, err error) {
	if intended.Before(r.from) {
		return
	}
	us := max(done.Sub(intended).Microseconds(), histMin)
	s := &r.shards[worker%histShards]
	s.mu.Lock()
	_ = s.all.RecordValue(min(us, histMax))
	_ = s.service.RecordValue(min(max(done.Sub(sent).Microseconds(), histMin), histMax))
	if class >= 0 && class < r.classes {
		_ = s.byClass[class].RecordValue(min(us, histMax))
		s.counts[class]++
	}
	s.n++
	if err != nil {
		s.errs++
		if s.first == "" {
			s.first = err.Error()
		}
	}
	if done.After(s.last) {
		s.last = done
	}
	s.mu.Unlock()
}

// result merges the shards. The measured window ends at end, or at the last
// completion when that came earlier (a closed loop that ran out of work) or,
// with drain, later (an open loop whose queue drained after its schedule).
func (r *recorder) result(end time.Time, drain bool) loadResult {
	res := loadResult{hist: newHist(), service: newHist(), classCounts: make([]uint64, r.classes)}
	for range r.classes {
		res.classHists = append(res.classHists, newHist())
	}
	var last time.Time
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		res.hist.Merge(s.all)
		res.service.Merge(s.service)
		for c := range r.classes {
			res.classHists[c].Merge(s.byClass[c])
			res.classCounts[c] += s.counts[c]
		}
		res.requests += s.n
		res.errors += s.errs
		if res.firstError == "" {
			res.firstError = s.first
		}
		if s.last.After(last) {
			last = s.last
		}
		s.mu.Unlock()
	}
	if !last.IsZero() && (last.Before(end) || drain) {
		end = last
	}
	res.elapsed = end.Sub(r.from)
	return res
}

// runLoad runs one point: a closed loop when spec.rate is 0, else an open
// loop.
func runLoad(ctx context.Context, spec loadSpec, do op) (loadResult, error) {
	if spec.workers <= 0 || spec.duration <= 0 {
		return loadResult{}, fmt.Errorf("load: workers and duration must be positive")
	}
	if spec.rate > 0 {
		return openLoop(ctx, spec, do), ctx.Err()
	}
	return closedLoop(ctx, spec, do), ctx.Err()
}

// requestGrace bounds how long a request may take after the end of a run
// before the run gives up on it.
const requestGrace = 10 * time.Second

// closedLoop keeps spec.workers requests in flight for the duration:
// maximum throughput at that concurrency. Latency is measured from send to
// answer.
func closedLoop(ctx context.Context, spec loadSpec, do op) loadResult {
	start := time.Now()
	from := start.Add(spec.warmup)
	end := from.Add(spec.duration)
	rctx, cancel := context.WithDeadline(ctx, end.Add(requestGrace))
	defer cancel()
	rec := newRecorder(from, len(spec.classes))
	var (
		seq       atomic.Uint64
		exhausted atomic.Bool
		wg        sync.WaitGroup
	)
	for w := range spec.workers {
		wg.Go(func() {
			for rctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				n := seq.Add(1) - 1
				if spec.maxOps > 0 && n >= spec.maxOps {
					exhausted.Store(true)
					return
				}
				class, err := do(rctx, n)
				if errors.Is(err, errExhausted) {
					exhausted.Store(true)
					return
				}
				rec.record(w, t0, t0, time.Now(), class, err)
			}
		})
	}
	wg.Wait()
	res := rec.result(end, false)
	res.exhausted = exhausted.Load()
	return res
}

// openLoop sends at a fixed rate whatever the answers do, and measures each
// latency from the request's intended send time on the schedule, not from
// when it was actually sent: a stalled server delays the requests queued
// behind it, and that wait counts (coordinated-omission correction, as in
// wrk2). Up to spec.workers requests are in flight; the ones beyond wait in
// the queue, their clocks running.
func openLoop(ctx context.Context, spec loadSpec, do op) loadResult {
	total := uint64(math.Ceil(spec.rate * (spec.warmup + spec.duration).Seconds()))
	if spec.maxOps > 0 && spec.maxOps < total {
		total = spec.maxOps
	}
	interval := float64(time.Second) / spec.rate
	start := time.Now().Add(5 * time.Millisecond)
	from := start.Add(spec.warmup)
	end := start.Add(time.Duration(float64(total) * interval))
	rctx, cancel := context.WithDeadline(ctx, end.Add(requestGrace))
	defer cancel()
	rec := newRecorder(from, len(spec.classes))

	type slot struct {
		seq      uint64
		intended time.Time
	}
	queue := make(chan slot, 1<<16)
	var (
		wg        sync.WaitGroup
		exhausted atomic.Bool
		unsent    atomic.Uint64
	)
	for w := range spec.workers {
		wg.Go(func() {
			for s := range queue {
				if rctx.Err() != nil {
					unsent.Add(1)
					continue
				}
				sent := time.Now()
				class, err := do(rctx, s.seq)
				if errors.Is(err, errExhausted) {
					exhausted.Store(true)
					continue
				}
				rec.record(w, s.intended, sent, time.Now(), class, err)
			}
		})
	}
	// The dispatcher releases every slot whose time has come, then sleeps
	// until the next one. Sleeping late delays the send but not the clock
	// of the request, which starts at its intended time.
	for n := uint64(0); n < total && rctx.Err() == nil; {
		now := time.Now()
		for ; n < total; n++ {
			at := start.Add(time.Duration(float64(n) * interval))
			if at.After(now) {
				time.Sleep(at.Sub(now))
				break
			}
			queue <- slot{n, at}
		}
	}
	close(queue)
	wg.Wait()
	res := rec.result(end, true)
	res.exhausted = exhausted.Load()
	res.unsent = unsent.Load()
	res.errors += res.unsent
	if res.unsent > 0 && res.firstError == "" {
		res.firstError = fmt.Sprintf("%d requests not sent before the deadline", res.unsent)
	}
	return res
}
