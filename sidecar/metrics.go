package sidecar

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/talos-project/talos/extauthz"
)

// DecisionMetrics counts the sidecar's decisions by transport, HTTP status and
// cache status, and times them. Labels never carry a credential or key ID.
type DecisionMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewDecisionMetrics registers the decision metrics on reg.
func NewDecisionMetrics(reg prometheus.Registerer) *DecisionMetrics {
	m := &DecisionMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "talos_proxy_decisions_total",
			Help: "Authorization decisions by transport (grpc, http, verify), HTTP status and cache status.",
		}, []string{"transport", "code", "cache"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "talos_proxy_decision_duration_seconds",
			Help:    "Time to decide, by transport and cache status.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5},
		}, []string{"transport", "cache"}),
	}
	reg.MustRegister(m.total, m.duration)
	return m
}

// Observe is an extauthz.Options.Observe hook.
func (m *DecisionMetrics) Observe(transport string, v extauthz.Verdict, status int, elapsed time.Duration) {
	cache := v.Cache.String()
	m.total.WithLabelValues(transport, statusText(status), cache).Inc()
	m.duration.WithLabelValues(transport, cache).Observe(elapsed.Seconds())
}

// statusText avoids an allocation for the common statuses.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 401:
		return "401"
	case 403:
		return "403"
	case 429:
		return "429"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
