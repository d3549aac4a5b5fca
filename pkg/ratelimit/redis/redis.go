// Package redis is the shared ratelimit.Limiter: GCRA state in Redis
// (standalone or Cluster, through github.com/redis/go-redis/v9), so that every
// replica spends one budget per key.
//
// Each decision is one Lua script, evaluated atomically by the server with
// EVALSHA (EVAL when the server answers NOSCRIPT, after a restart or SCRIPT
// FLUSH). The script reads the clock with Redis TIME, so all callers share
// one clock however far their own drift. A key holds one integer, its TAT in
// microseconds since the Unix epoch, under Options.KeyPrefix followed by the
// caller's key, and expires (PEXPIRE) one second after its budget is full
// again; a key whose budget is full has no state. The arithmetic is
// ratelimit.GCRA's, in nanoseconds relative to the server's now; the stored
// TAT is rounded up to the microsecond, never down, so rounding can only
// refuse sooner (by at most 1µs per call), never allow more.
//
// Limiter is safe for concurrent use. It imports pkg/ratelimit,
// pkg/credential and go-redis only.
package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// DefaultKeyPrefix is the key prefix when Options.KeyPrefix is empty.
const DefaultKeyPrefix = "talos:rl:"

// Options configure a Limiter. The zero value is usable.
type Options struct {
	// KeyPrefix is put before every key; DefaultKeyPrefix when empty.
	KeyPrefix string
	// Timeout bounds each Allow's round trip; zero leaves it to the
	// client's own timeouts and the caller's context.
	Timeout time.Duration
}

// Limiter is a ratelimit.Limiter on Redis. Create it with New.
type Limiter struct {
	c       goredis.UniversalClient
	prefix  string
	timeout time.Duration
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns a Limiter on c. It does not connect; c stays the caller's to
// close.
func New(c goredis.UniversalClient, o Options) *Limiter {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	return &Limiter{c: c, prefix: o.KeyPrefix, timeout: o.Timeout}
}

// script evaluates ratelimit.GCRA on KEYS[1] at the server's TIME.
// ARGV: emission interval T (ns), burst tolerance tau (ns), cost.
// Reply: {allowed (0/1), remaining, retry after (ns), reset after (ns)}.
//
// All times are nanoseconds relative to now, exact in a Lua double while
// they stay below 2^53 ns (104 days); only the stored TAT is absolute (µs).
var script = goredis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stored = redis.call('GET', KEYS[1])
local tat = nil -- relative ns; nil: no state (budget full)
if stored then tat = (tonumber(stored) - now_us) * 1000 end
-- idiv is a truncating division of integers, exact even where a/b rounds.
local function idiv(a, b)
  local neg = a < 0
  if neg then a = -a end
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  if neg then q = -q end
  return q
end
local function remaining(x) return idiv(tau - x, t) end
local base = 0
if tat and tat > 0 then base = tat end
local nxt = base + cost * t
if nxt < 0 then nxt = 0 end
if cost > 0 then
  local allow_at = nxt - tau
  if allow_at > 0 then
    return {0, remaining(base), allow_at, base}
  end
end
if cost == 0 then
  local l = 0
  if tat and tat > 0 then l = tat end
  return {1, remaining(l), 0, l}
end
if nxt > 0 then
  local us = math.ceil(nxt / 1000)
  redis.call('SET', KEYS[1], string.format('%.0f', now_us + us), 'PX', math.ceil(us / 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return {1, remaining(nxt), 0, nxt}
`)

// Allow implements ratelimit.Limiter. It returns ratelimit.ErrInvalidPolicy
// without a round trip for a policy that fails ratelimit.Check, and wraps
// any Redis or context error.
func (l *Limiter) Allow(ctx context.Context, key string, p credential.RatePolicy, cost int64) (ratelimit.Decision, error) {
	if err := ratelimit.Check(p, cost); err != nil {
		return ratelimit.Decision{}, err
	}
	if l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	t := p.Window / time.Duration(p.Quota) // as ratelimit.GCRA
	tau := t * time.Duration(p.Quota)
	r, err := script.Run(ctx, l.c, []string{l.prefix + key}, int64(t), int64(tau), cost).Int64Slice()
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("ratelimit/redis: allow: %w", err)
	}
	if len(r) != 4 {
		return ratelimit.Decision{}, fmt.Errorf("ratelimit/redis: allow: script replied %d values, want 4", len(r))
	}
	return ratelimit.Decision{
		Allowed:    r[0] == 1,
		Remaining:  r[1],
		RetryAfter: time.Duration(r[2]),
		ResetAfter: time.Duration(r[3]),
	}, nil
}
