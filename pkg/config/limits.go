package config

// Limits is serve.limits: bounds on what any peer, authenticated or not, can
// make a process hold. Each of a process's listeners (HTTP, gRPC, metrics)
// holds at most MaxConnections open connections (the metrics listener at most
// 256); each gRPC connection at most MaxConcurrentStreams calls at a time.
type Limits struct {
	MaxConnections       int `koanf:"max_connections"`
	MaxConcurrentStreams int `koanf:"max_concurrent_streams"`
}

// ProxyLimits is proxy.limits: serve.limits's keys for the proxy's
// listeners, plus the largest ext_authz CheckRequest it reads.
type ProxyLimits struct {
	Limits `koanf:",squash"`
	// MaxMessageBytes caps one received gRPC message (a CheckRequest carries
	// the request's headers, and its body only when Envoy is configured to
	// send it, which Talos never needs).
	MaxMessageBytes int `koanf:"max_message_bytes"`
}

// Bounds of the limits keys (the schema holds the same).
const (
	MaxLimitConnections   = 1 << 20
	MaxLimitStreams       = 1 << 20
	MinLimitMessageBytes  = 64 << 10
	MaxLimitMessageBytes  = 64 << 20
	defaultMaxConnections = 4096
	defaultMaxStreams     = 100
	defaultMaxMessage     = 1 << 20
)

func defaultLimits() Limits {
	return Limits{MaxConnections: defaultMaxConnections, MaxConcurrentStreams: defaultMaxStreams}
}

func checkLimits(path string, l Limits, fail func(path, format string, args ...any)) {
	if l.MaxConnections < 1 || l.MaxConnections > MaxLimitConnections {
		fail(path+".max_connections", "must be between 1 and %d (got %d)", MaxLimitConnections, l.MaxConnections)
	}
	if l.MaxConcurrentStreams < 1 || l.MaxConcurrentStreams > MaxLimitStreams {
		fail(path+".max_concurrent_streams", "must be between 1 and %d (got %d)", MaxLimitStreams, l.MaxConcurrentStreams)
	}
}

func checkProxyLimits(l ProxyLimits, fail func(path, format string, args ...any)) {
	checkLimits("proxy.limits", l.Limits, fail)
	if l.MaxMessageBytes < MinLimitMessageBytes || l.MaxMessageBytes > MaxLimitMessageBytes {
		fail("proxy.limits.max_message_bytes", "must be between %d and %d (got %d)", MinLimitMessageBytes, MaxLimitMessageBytes, l.MaxMessageBytes)
	}
}
