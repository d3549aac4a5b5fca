// Package ratelimit holds the rate-limit arithmetic both processes share: the
// Limiter port, the GCRA (generic cell rate algorithm) that every backend
// evaluates, and the client-address grouping of per-address limits.
//
// GCRA keeps one timestamp per key, the theoretical arrival time (TAT): the
// instant at which the key's budget would be full again. A policy of Quota
// units per Window is an emission interval T = Window/Quota and a burst of
// Quota: a fresh key may spend Quota units at once, then one more every T.
// Backends differ only in where the TAT lives (memory/ in process; a Redis
// backend evaluates the same arithmetic atomically in Lua).
package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// Limiter applies a policy to a key. Cost is the units the request spends:
// a positive cost is charged only when the whole of it fits (else nothing is
// charged and the Decision says when it would); zero reports the state
// without changing it; a negative cost gives units back, never beyond a full
// budget. An error means the state could not be read or written; callers
// decide whether that fails open or closed.
type Limiter interface {
	Allow(ctx context.Context, key string, p credential.RatePolicy, cost int64) (Decision, error)
}

// Decision is the outcome of one Allow.
type Decision struct {
	// Allowed reports whether the cost was charged (always true for a cost of
	// zero or less).
	Allowed bool
	// Remaining is how many units of cost 1 would be allowed right after this
	// decision.
	Remaining int64
	// RetryAfter is, for a refused request, how long until the same cost
	// would be allowed; zero when allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the budget is full again.
	ResetAfter time.Duration
	// Fallback reports that a Resilient's fallback limiter decided, not its
	// primary: the budget was not the shared one.
	Fallback bool
}

// ErrInvalidPolicy is returned for a policy that cannot be evaluated: a
// quota or window not above zero, a window shorter than the quota in
// nanoseconds, or a cost above the quota (it could never be allowed).
var ErrInvalidPolicy = errors.New("ratelimit: invalid policy")

// Check reports whether p and cost can be evaluated.
func Check(p credential.RatePolicy, cost int64) error {
	if p.Quota <= 0 || p.Window <= 0 || p.Window < time.Duration(p.Quota) || cost > p.Quota {
		return ErrInvalidPolicy
	}
	return nil
}

// GCRA evaluates one request of cost at now against the stored TAT (the zero
// time for a key without state) under p, which must pass Check. It returns
// the TAT to store (tat itself when nothing changes) and the decision. It is
// pure: backends call it with their own clock and storage.
func GCRA(tat, now time.Time, p credential.RatePolicy, cost int64) (time.Time, Decision) {
	t := p.Window / time.Duration(p.Quota) // emission interval
	tau := t * time.Duration(p.Quota)      // burst tolerance, ~Window
	base := tat
	if base.Before(now) {
		base = now
	}
	next := base.Add(time.Duration(cost) * t)
	if next.Before(now) {
		next = now
	}
	remaining := func(tat time.Time) int64 { return int64((tau - tat.Sub(now)) / t) }
	if cost > 0 {
		if allowAt := next.Add(-tau); allowAt.After(now) {
			return tat, Decision{Remaining: remaining(base), RetryAfter: allowAt.Sub(now), ResetAfter: base.Sub(now)}
		}
	}
	if cost == 0 {
		next = tat
	}
	d := Decision{Allowed: true, Remaining: remaining(later(next, now)), ResetAfter: later(next, now).Sub(now)}
	return next, d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// AddrKey is the key of a per-client-address limit: an IPv4 address (or an
// IPv4-mapped IPv6 one) stands alone, an IPv6 address is grouped with its
// /64, since one subscriber or host is typically given a whole /64 and could
// otherwise rotate through 2^64 addresses. The zero Addr (address unknown)
// is one shared key.
func AddrKey(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is4():
		return a.String()
	default:
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
}

// NetworkKey is the wider group an IPv6 address's /64 belongs to: its /48,
// the block a single site (or a free tunnel broker's customer) holds, so an
// attacker who owns 65,536 /64s still shares one budget. IPv4 and unknown
// addresses have none: "".
func NetworkKey(a netip.Addr) string {
	a = a.Unmap()
	if !a.IsValid() || a.Is4() {
		return ""
	}
	p, _ := a.WithZone("").Prefix(48)
	return p.String()
}
