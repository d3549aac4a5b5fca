package config

import "time"

// Shutdown is serve.shutdown and proxy.shutdown: what a process does on
// SIGTERM or SIGINT. Readiness fails at once; requests keep being served,
// new connections included, for DrainDelay (so load balancers and Envoy
// see the failing probe or the endpoint's removal and move away); then
// the listeners stop accepting and the requests in flight get Timeout to
// finish before the rest are cut. A second signal skips what is left of
// the drain delay.
type Shutdown struct {
	DrainDelay Duration `koanf:"drain_delay"`
	Timeout    Duration `koanf:"timeout"`
}

// Bounds of the shutdown keys: a pod's terminationGracePeriodSeconds must
// cover both, and neither should keep a dying process for long.
const (
	MaxShutdownDrainDelay = 5 * time.Minute
	MaxShutdownTimeout    = 10 * time.Minute
)

// ProxyReadiness is proxy.readiness.
type ProxyReadiness struct {
	// WaitForUpstream keeps /health/ready failing until the sidecar has
	// had its first answer from the control plane or its first
	// invalidation sync. Default true; false is for a warm restart next
	// to a shared cache that already holds the verdicts.
	WaitForUpstream bool `koanf:"wait_for_upstream"`
}

func checkShutdown(path string, s Shutdown, fail func(path, format string, args ...any)) {
	if d := s.DrainDelay.D(); d < 0 || d > MaxShutdownDrainDelay {
		fail(path+".drain_delay", "must be between 0 and %s (got %s)", MaxShutdownDrainDelay, s.DrainDelay)
	}
	if d := s.Timeout.D(); d <= 0 || d > MaxShutdownTimeout {
		fail(path+".timeout", "must be greater than 0 and at most %s (got %s)", MaxShutdownTimeout, s.Timeout)
	}
}
