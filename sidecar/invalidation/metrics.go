package invalidation

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the client's metrics on reg. They read the
// client's counters at scrape time, so they cost nothing between scrapes:
//
//   - talos_proxy_invalidation_connected: 1 while the current stream has
//     received a response;
//   - talos_proxy_invalidation_fresh: 1 while Fresh is true;
//   - talos_proxy_invalidation_watermark: the highest seq advanced to;
//   - talos_proxy_invalidation_applied_total: key invalidations applied;
//   - talos_proxy_invalidation_reconnects_total: streams opened after the first;
//   - talos_proxy_invalidation_nacks_total: responses rejected;
//   - talos_proxy_invalidation_seconds_since_heard: seconds since the last
//     applied response, by Options.Now; +Inf before the first.
//
// It returns the registry's error if one is already registered.
func (c *Client) RegisterMetrics(reg prometheus.Registerer) error {
	bit := func(b *atomic.Bool) func() float64 {
		return func() float64 {
			if b.Load() {
				return 1
			}
			return 0
		}
	}
	count := func(n *atomic.Uint64) func() float64 {
		return func() float64 { return float64(n.Load()) }
	}
	const prefix = "talos_proxy_invalidation_"
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "connected",
			Help: "1 while the invalidation stream to the control plane is up and answering.",
		}, bit(&c.connected)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "fresh",
			Help: "1 while cached verdicts may be trusted: synced and heard from the control plane within the staleness bound.",
		}, bit(&c.fresh)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "watermark",
			Help: "The outbox sequence number up to which every change is known.",
		}, func() float64 { return float64(c.watermark.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: prefix + "applied_total",
			Help: "Key invalidations applied.",
		}, count(&c.applied)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: prefix + "reconnects_total",
			Help: "Invalidation streams opened after the first.",
		}, count(&c.reconnects)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: prefix + "nacks_total",
			Help: "Invalidation responses rejected.",
		}, count(&c.nacks)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: prefix + "seconds_since_heard",
			Help: "Seconds since the last response from the control plane was applied; +Inf before the first.",
		}, c.secondsSinceHeard),
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("invalidation: register metrics: %w", err)
		}
	}
	return nil
}

func (c *Client) secondsSinceHeard() float64 {
	n := c.lastHeard.Load()
	if n == 0 {
		return math.Inf(1)
	}
	return float64(c.sinceBase(c.now())-n) / 1e9
}
