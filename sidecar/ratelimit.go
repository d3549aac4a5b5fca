package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
	rlredis "github.com/talos-project/talos/pkg/ratelimit/redis"
)

// Rate-limit backends (proxy.rate_limit.backend), as metric labels.
const (
	RateLimitMemory = "memory"
	RateLimitRedis  = "redis"
)

// RateLimitOptions build the sidecar's limiter (proxy.rate_limit).
type RateLimitOptions struct {
	// Backend is RateLimitMemory (each sidecar keeps its own budgets) or
	// RateLimitRedis (the sidecars of one Redis share them).
	Backend string
	// Redis is the client of proxy.cache.redis, for the redis backend. The
	// limiter does not close it.
	Redis goredis.UniversalClient
	// KeyPrefix namespaces the limiter's keys in Redis (talos:rl: when "").
	KeyPrefix string
	// Timeout bounds each Redis round trip; zero leaves it to the client.
	Timeout time.Duration
	// MaxKeys bounds the keys of the memory backend, and of the fallback.
	MaxKeys int
	// Fallback keeps limiting in memory, per sidecar, while Redis is
	// unreachable; false leaves such checks to the failure mode.
	Fallback bool
	// Threshold and OpenFor tune the circuit breaker in front of Redis
	// (ratelimit.ResilientOptions); zero takes its defaults.
	Threshold int
	OpenFor   time.Duration
	Registry  prometheus.Registerer
	Logger    *slog.Logger
}

// RateLimiter is the sidecar's ratelimit.Limiter: the configured backend
// (Redis behind a circuit breaker, with an optional memory fallback) and its
// metrics:
//
//   - talos_ratelimit_decisions_total{where="sidecar",backend,result}:
//     result is allowed or limited for a decision, error when none could be
//     made (the check then follows the failure mode). A decision of the
//     memory fallback counts under backend="memory".
//   - talos_ratelimit_backend_duration_seconds{backend}: the time of each
//     Allow, breaker and fallback included.
type RateLimiter struct {
	l        ratelimit.Limiter
	breaker  *ratelimit.Resilient
	backend  string
	results  [2][3]prometheus.Counter // [primary, fallback][allowed, limited, error]
	duration [2]prometheus.Observer
}

// NewRateLimiter builds the limiter o describes, logs which it is, and
// registers its metrics on o.Registry when set.
func NewRateLimiter(o RateLimitOptions) (*RateLimiter, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &RateLimiter{backend: o.Backend}
	switch o.Backend {
	case RateLimitMemory:
		r.l = memory.New(memory.Options{MaxKeys: o.MaxKeys})
		log.Info("rate limiting keys in memory: each sidecar keeps its own budgets, so N sidecars allow N x quota (use proxy.rate_limit.backend redis to share them)")
	case RateLimitRedis:
		if o.Redis == nil {
			return nil, errors.New("sidecar: the redis rate-limit backend needs a Redis client")
		}
		ro := ratelimit.ResilientOptions{Threshold: o.Threshold, OpenFor: o.OpenFor, OnStateChange: func(open bool) {
			if open {
				log.Warn("rate-limit Redis unreachable: circuit open", slog.Bool("memory_fallback", o.Fallback))
			} else {
				log.Info("rate-limit Redis reachable again: circuit closed")
			}
		}}
		if o.Fallback {
			ro.Fallback = memory.New(memory.Options{MaxKeys: o.MaxKeys})
		}
		r.breaker = ratelimit.NewResilient(rlredis.New(o.Redis, rlredis.Options{KeyPrefix: o.KeyPrefix, Timeout: o.Timeout}), ro)
		r.l = r.breaker
		log.Info("rate limiting keys in Redis, shared by the sidecars of that Redis", slog.Bool("memory_fallback", o.Fallback))
	default:
		return nil, errors.New("sidecar: rate-limit backend must be memory or redis")
	}
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "talos_ratelimit_decisions_total",
		Help: "Rate-limit decisions by where they were made, backend and result (allowed, limited, error: none could be made).",
	}, []string{"where", "backend", "result"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "talos_ratelimit_backend_duration_seconds",
		Help:    "Time of each rate-limit decision by backend, circuit breaker and fallback included.",
		Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5},
	}, []string{"backend"})
	if o.Registry != nil {
		if err := o.Registry.Register(total); err != nil {
			return nil, err
		}
		if err := o.Registry.Register(dur); err != nil {
			return nil, err
		}
	}
	for i, b := range []string{o.Backend, RateLimitMemory} {
		for j, res := range []string{"allowed", "limited", "error"} {
			r.results[i][j] = total.WithLabelValues("sidecar", b, res)
		}
		r.duration[i] = dur.WithLabelValues(b)
	}
	return r, nil
}

// Allow implements ratelimit.Limiter.
func (r *RateLimiter) Allow(ctx context.Context, key string, p credential.RatePolicy, cost int64) (ratelimit.Decision, error) {
	start := time.Now()
	d, err := r.l.Allow(ctx, key, p, cost)
	src := 0
	if d.Fallback {
		src = 1
	}
	r.duration[src].Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		r.results[src][2].Inc()
	case d.Allowed:
		r.results[src][0].Inc()
	default:
		r.results[src][1].Inc()
	}
	return d, err
}

// Backend is RateLimitMemory or RateLimitRedis.
func (r *RateLimiter) Backend() string { return r.backend }

// BreakerState is the state of the circuit breaker in front of Redis;
// StateClosed for the memory backend.
func (r *RateLimiter) BreakerState() ratelimit.State {
	if r.breaker == nil {
		return ratelimit.StateClosed
	}
	return r.breaker.State()
}
