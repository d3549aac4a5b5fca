package telemetry

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/talos-project/talos/pkg/serve"
)

// RegisterListeners registers, for each named listener,
// talos_listener_connections (open now), talos_listener_max_connections (the
// cap) and talos_listener_rejected_connections_total by reason ("refused": the
// cap was reached and no connection was idle; "evicted": an idle connection
// was closed to admit a new one). Rejections mean a listener is full: raise
// serve.limits.max_connections (proxy.limits.max_connections), or look for
// who holds the connections.
func RegisterListeners(reg prometheus.Registerer, ls map[string]*serve.Listener) error {
	return reg.Register(&listenerCollector{ls: ls, names: slices.Sorted(maps.Keys(ls))})
}

var (
	listenerOpenDesc = prometheus.NewDesc("talos_listener_connections",
		"Connections open now, by listener.", []string{"listener"}, nil)
	listenerMaxDesc = prometheus.NewDesc("talos_listener_max_connections",
		"Cap of open connections, by listener.", []string{"listener"}, nil)
	listenerRejectedDesc = prometheus.NewDesc("talos_listener_rejected_connections_total",
		"Connections closed because the listener was full, by listener and reason (refused: the new one; evicted: an idle one, to admit the new one).",
		[]string{"listener", "reason"}, nil)
)

type listenerCollector struct {
	ls    map[string]*serve.Listener
	names []string
}

func (c *listenerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- listenerOpenDesc
	ch <- listenerMaxDesc
	ch <- listenerRejectedDesc
}

func (c *listenerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.names {
		s := c.ls[name].Stats()
		ch <- prometheus.MustNewConstMetric(listenerOpenDesc, prometheus.GaugeValue, float64(s.Open), name)
		ch <- prometheus.MustNewConstMetric(listenerMaxDesc, prometheus.GaugeValue, float64(s.Max), name)
		ch <- prometheus.MustNewConstMetric(listenerRejectedDesc, prometheus.CounterValue, float64(s.Refused), name, "refused")
		ch <- prometheus.MustNewConstMetric(listenerRejectedDesc, prometheus.CounterValue, float64(s.Evicted), name, "evicted")
	}
}
