package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/talos-project/talos/pkg/credential"
)

// VerifyMetrics counts verifications by credential type and outcome and times
// them. Labels never carry a credential or a key ID. Safe for concurrent use;
// a nil *VerifyMetrics records nothing.
type VerifyMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewVerifyMetrics registers talos_verify_total and
// talos_verify_duration_seconds on reg.
func NewVerifyMetrics(reg prometheus.Registerer) *VerifyMetrics {
	m := &VerifyMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "talos_verify_total",
			Help: "Credential verifications by credential type and result (valid, or the error kind).",
		}, []string{"credential_type", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "talos_verify_duration_seconds",
			Help:    "Time to verify one credential, by credential type.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}, []string{"credential_type"}),
	}
	reg.MustRegister(m.total, m.duration)
	return m
}

// Observe records one verification of type t that took d and ended with err.
func (m *VerifyMetrics) Observe(t credential.CredentialType, err error, d time.Duration) {
	if m == nil {
		return
	}
	result := "valid"
	if err != nil {
		result = "error"
		if k := credential.KindOf(err); k != nil {
			result = k.Error()
		}
	}
	m.total.WithLabelValues(t.String(), result).Inc()
	m.duration.WithLabelValues(t.String()).Observe(d.Seconds())
}

// InstrumentHTTP counts and times the requests h serves, by HTTP method and
// status code (talos_http_requests_total, talos_http_request_duration_seconds).
// Only the standard methods are label values, any other is "_OTHER" (as in
// OpenTelemetry's semantic conventions): a method is any token a client
// chooses, and one series per token would let anyone grow /metrics without
// bound. Paths are not labels: they carry key IDs.
func InstrumentHTTP(reg prometheus.Registerer, h http.Handler) http.Handler {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "talos_http_requests_total",
		Help: "HTTP requests by method and status code.",
	}, []string{"method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "talos_http_request_duration_seconds",
		Help:    "HTTP request latency by method.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method"})
	reg.MustRegister(total, duration)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		m := MethodLabel(r.Method)
		total.WithLabelValues(m, strconv.Itoa(sw.code)).Inc()
		duration.WithLabelValues(m).Observe(time.Since(start).Seconds())
	})
}

// MethodLabel is method if it is one of the RFC 9110 methods or PATCH, else
// "_OTHER": the form of a client-chosen method that metrics and logs show.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "_OTHER"
}

type codeWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (c *codeWriter) WriteHeader(code int) {
	if !c.wrote {
		c.code, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(p []byte) (int, error) {
	c.wrote = true
	return c.ResponseWriter.Write(p)
}

func (c *codeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
