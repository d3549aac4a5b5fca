package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// ErrBackendDown is returned by a Resilient without a fallback while its
// circuit is open: the primary is not called at all.
var ErrBackendDown = errors.New("ratelimit: backend down")

// Resilient defaults.
const (
	DefaultThreshold = 5
	DefaultOpenFor   = time.Second
)

// ResilientOptions configure a Resilient. The zero value is usable.
type ResilientOptions struct {
	// Fallback decides while the circuit is open and for a call whose
	// primary failed; its decisions have Decision.Fallback set. Nil: none,
	// those calls fail (ErrBackendDown, or the primary's error).
	Fallback Limiter
	// Threshold is the number of consecutive primary errors that opens the
	// circuit; DefaultThreshold when zero or less.
	Threshold int
	// OpenFor is how long the circuit stays open before one trial call;
	// DefaultOpenFor when zero or less.
	OpenFor time.Duration
	// OnStateChange, when set, is called with true when the circuit opens
	// (from closed) and false when it closes again, on the goroutine whose
	// call changed it; it must not block. A failed trial that re-opens the
	// circuit is not a change.
	OnStateChange func(open bool)
}

// State is the state of a Resilient's circuit.
type State int32

// States of the circuit.
const (
	// StateClosed: the primary decides.
	StateClosed State = iota
	// StateOpen: the primary failed Threshold times in a row; it is not
	// called until OpenFor has passed.
	StateOpen
	// StateHalfOpen: one trial call is on the primary; its outcome closes or
	// re-opens the circuit, and other calls are treated as open meanwhile.
	StateHalfOpen
)

func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Resilient is a Limiter on a primary (Redis, typically) behind a circuit
// breaker, with an optional fallback (an in-process limiter). While closed it
// calls the primary; after Threshold consecutive errors it opens for OpenFor,
// during which the primary is not called (no call waits for a dead server's
// timeout) and the fallback decides or, without one, Allow fails at once
// with ErrBackendDown; then one trial call (half-open) closes the circuit on
// success or opens it again.
//
// Errors that say nothing about the primary's health are passed through
// without counting: ErrInvalidPolicy, and cancellation of the caller's own
// context.
//
// Resilient is safe for concurrent use; while closed and healthy a call costs
// two atomic loads besides the primary's.
type Resilient struct {
	primary, fallback Limiter
	threshold         int64
	openFor           time.Duration
	onChange          func(open bool)

	state     atomic.Int32 // State
	failures  atomic.Int64 // consecutive primary errors while closed
	openUntil atomic.Int64 // Unix ns at which an open circuit allows a trial
}

var _ Limiter = (*Resilient)(nil)

// NewResilient returns a closed Resilient on primary.
func NewResilient(primary Limiter, o ResilientOptions) *Resilient {
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.OpenFor <= 0 {
		o.OpenFor = DefaultOpenFor
	}
	return &Resilient{primary: primary, fallback: o.Fallback, threshold: int64(o.Threshold), openFor: o.OpenFor, onChange: o.OnStateChange}
}

// State reports the circuit's state, for metrics and readiness.
func (r *Resilient) State() State { return State(r.state.Load()) }

// Allow implements Limiter. A Decision with Fallback set came from the
// fallback; an error wrapping ErrBackendDown means the circuit is open and
// there is no fallback.
func (r *Resilient) Allow(ctx context.Context, key string, p credential.RatePolicy, cost int64) (Decision, error) {
	switch State(r.state.Load()) {
	case StateClosed:
		d, err := r.primary.Allow(ctx, key, p, cost)
		if err == nil {
			if r.failures.Load() != 0 {
				r.failures.Store(0)
			}
			return d, nil
		}
		if !r.counts(ctx, err) {
			return d, err
		}
		if r.failures.Add(1) >= r.threshold {
			// openUntil first: whoever sees the state open sees its deadline.
			r.openUntil.Store(time.Now().Add(r.openFor).UnixNano())
			if r.state.CompareAndSwap(int32(StateClosed), int32(StateOpen)) && r.onChange != nil {
				r.onChange(true)
			}
		}
		return r.fallbackAllow(ctx, key, p, cost, err)
	case StateOpen:
		if time.Now().UnixNano() >= r.openUntil.Load() && r.state.CompareAndSwap(int32(StateOpen), int32(StateHalfOpen)) {
			return r.trial(ctx, key, p, cost)
		}
	}
	return r.fallbackAllow(ctx, key, p, cost, errOpen)
}

var errOpen = fmt.Errorf("%w: circuit open", ErrBackendDown)

// trial is the one primary call of a half-open circuit.
func (r *Resilient) trial(ctx context.Context, key string, p credential.RatePolicy, cost int64) (Decision, error) {
	d, err := r.primary.Allow(ctx, key, p, cost)
	switch {
	case err == nil:
		r.failures.Store(0)
		r.state.Store(int32(StateClosed))
		if r.onChange != nil {
			r.onChange(false)
		}
		return d, nil
	case !r.counts(ctx, err):
		// Nothing learnt: the next call makes the trial again.
		r.state.Store(int32(StateOpen))
		return d, err
	}
	r.openUntil.Store(time.Now().Add(r.openFor).UnixNano())
	r.state.Store(int32(StateOpen))
	return r.fallbackAllow(ctx, key, p, cost, err)
}

// counts reports whether err from the primary is a sign of its ill health.
func (r *Resilient) counts(ctx context.Context, err error) bool {
	if errors.Is(err, ErrInvalidPolicy) {
		return false
	}
	return !(errors.Is(err, context.Canceled) && ctx.Err() != nil)
}

// fallbackAllow decides with the fallback, or fails with cause without one.
func (r *Resilient) fallbackAllow(ctx context.Context, key string, p credential.RatePolicy, cost int64, cause error) (Decision, error) {
	if r.fallback == nil {
		return Decision{}, cause
	}
	d, err := r.fallback.Allow(ctx, key, p, cost)
	d.Fallback = true
	return d, err
}
