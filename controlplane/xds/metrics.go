package xds

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics registers the server's metrics on reg: the gauges
// talos_xds_streams and talos_xds_resources, and the counters
// talos_xds_published_total and talos_xds_nacks_total. It returns reg's error
// when one is already registered (for instance on a second call).
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "talos_xds_streams",
			Help: "Open invalidation streams (delta and state-of-the-world).",
		}, func() float64 { return float64(s.Streams()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "talos_xds_resources",
			Help: "Invalidation resources held, not counting the heartbeat.",
		}, func() float64 { return float64(s.Resources()) }),
		s.published,
		s.nacks,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
