package grpcapi

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/talos-project/talos/controlplane/keys"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// Rate-limit header metadata keys (lower case, as gRPC metadata is); the
// HTTP gateway forwards exactly these as the plain HTTP headers
// ratelimit.HeaderPolicy, HeaderState and HeaderRetryAfter (see
// RateLimitHeader).
var (
	mdPolicy     = strings.ToLower(ratelimit.HeaderPolicy)
	mdState      = strings.ToLower(ratelimit.HeaderState)
	mdRetryAfter = strings.ToLower(ratelimit.HeaderRetryAfter)
)

// RateLimitHeader maps a response metadata key to the HTTP header the
// gateway sends it as: the rate-limit headers only.
func RateLimitHeader(key string) (string, bool) {
	switch strings.ToLower(key) {
	case mdPolicy:
		return ratelimit.HeaderPolicy, true
	case mdState:
		return ratelimit.HeaderState, true
	case mdRetryAfter:
		return ratelimit.HeaderRetryAfter, true
	}
	return "", false
}

// withRate fills out's rate-limit fields from rs: remaining and reset time
// when the limiter decided, nothing otherwise.
func withRate(out *pb.VerifyApiKeyResponse, rs keys.RateState) *pb.VerifyApiKeyResponse {
	if rs.Counted {
		remaining := max(rs.Decision.Remaining, 0)
		if !rs.Decision.Allowed {
			remaining = 0
		}
		apiconv.SetRateLimit(out, remaining, rs.ResetTime())
	}
	return out
}

// setRateHeaders sends a single verification's rate-limit headers:
// RateLimit-Policy whenever the key has a policy (enforcement on or off),
// RateLimit when the limiter decided, Retry-After when it refused. A call
// without a transport stream (a direct call in a test) sends nothing.
func setRateHeaders(ctx context.Context, rs keys.RateState) {
	if rs.Policy == nil {
		return
	}
	md := metadata.Pairs(mdPolicy, ratelimit.PolicyValue(*rs.Policy))
	if rs.Counted {
		md.Set(mdState, ratelimit.StateValue(rs.Decision))
		if !rs.Decision.Allowed {
			md.Set(mdRetryAfter, strconv.FormatInt(ratelimit.RetryAfterSeconds(rs.Decision.RetryAfter), 10))
		}
	}
	_ = grpc.SetHeader(ctx, md)
}

// setBatchRetryAfter sends, for a batch with refused items, Retry-After:
// the longest wait among them. A batch sends no other rate-limit header:
// RateLimit-Policy and RateLimit describe one key; each item carries its
// own rate_limit_remaining and rate_limit_reset_time.
func setBatchRetryAfter(ctx context.Context, states []keys.RateState) {
	var wait time.Duration
	limited := false
	for _, rs := range states {
		if rs.Counted && !rs.Decision.Allowed {
			limited = true
			wait = max(wait, rs.Decision.RetryAfter)
		}
	}
	if limited {
		_ = grpc.SetHeader(ctx, metadata.Pairs(mdRetryAfter, strconv.FormatInt(ratelimit.RetryAfterSeconds(wait), 10)))
	}
}

// NewRateLimitMetrics registers talos_ratelimit_decisions_total and
// talos_ratelimit_backend_duration_seconds on reg for the control plane's
// limiter of the given backend and returns the observer to give the keys
// service (keys.Deps.OnRateLimit).
func NewRateLimitMetrics(reg prometheus.Registerer, backend string) (keys.RateObserver, error) {
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "talos_ratelimit_decisions_total",
		Help:        "Rate-limit decisions on keys' policies, by result (allowed, limited, error).",
		ConstLabels: prometheus.Labels{"where": "controlplane", "backend": backend},
	}, []string{"result"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "talos_ratelimit_backend_duration_seconds",
		Help:        "Time the rate-limit backend took to decide.",
		ConstLabels: prometheus.Labels{"backend": backend},
		Buckets:     []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
	})
	for _, c := range []prometheus.Collector{decisions, duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"allowed", "limited", "error"} {
		decisions.WithLabelValues(r)
	}
	return func(result string, took time.Duration) {
		decisions.WithLabelValues(result).Inc()
		duration.Observe(took.Seconds())
	}, nil
}
