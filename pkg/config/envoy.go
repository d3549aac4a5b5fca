package config

import (
	"fmt"
	"strings"
)

// EnvoyXDS is the envoy section: the Envoy listener and clusters the control
// plane serves, next to the invalidations, on its gRPC port (xDS over ADS),
// for Envoys whose bootstrap takes LDS and CDS from it
// (deploy/envoy/envoy-ads.yaml). Every Envoy gets the same resources: a
// listener on 0.0.0.0:ListenerPort whose ext_authz filter asks the talos
// proxy at Sidecar before it routes a request to App.
type EnvoyXDS struct {
	// Enabled serves the resources. Default false: a stream asking for them
	// fails.
	Enabled bool `koanf:"enabled"`
	// ListenerPort is where Envoy listens for application traffic, 1 to
	// 65535. Default 8080.
	ListenerPort int `koanf:"listener_port"`
	// App is the host:port of the protected service, as Envoy dials it.
	// Default 127.0.0.1:8081.
	App string `koanf:"app"`
	// Sidecar is the host:port of the local talos proxy's ext_authz
	// listener (its proxy.extauthz), as Envoy dials it. Default
	// 127.0.0.1:9191.
	Sidecar string `koanf:"sidecar"`
	// Timeout bounds one ext_authz check; always > 0. Default 250ms.
	Timeout Duration `koanf:"timeout"`
	// FailureModeAllow lets a request through when the check itself fails.
	// Default false: fail closed, with 503.
	FailureModeAllow bool `koanf:"failure_mode_allow"`
	// RequiredScopes are the scopes every request's key must hold, sent to
	// the sidecar as the context extension talos.scopes. Empty (the
	// default) means any valid key. A scope holds no space or comma.
	RequiredScopes []string `koanf:"required_scopes"`
}

// checkEnvoyXDS checks the envoy section, enabled or not, so that turning it
// on cannot reveal an old mistake.
func checkEnvoyXDS(e EnvoyXDS, fail func(path, format string, args ...any)) {
	if e.ListenerPort < 1 || e.ListenerPort > 65535 {
		fail("envoy.listener_port", "must be between 1 and 65535 (got %d)", e.ListenerPort)
	}
	if !validHostPort(e.App) {
		fail("envoy.app", "must be host:port with a port from 1 to 65535 (got %q)", e.App)
	}
	if !validHostPort(e.Sidecar) {
		fail("envoy.sidecar", "must be host:port with a port from 1 to 65535 (got %q)", e.Sidecar)
	}
	if e.Timeout <= 0 {
		fail("envoy.timeout", "must be greater than 0")
	}
	for i, s := range e.RequiredScopes {
		if s == "" || strings.ContainsAny(s, ", \t\r\n") {
			fail(fmt.Sprintf("envoy.required_scopes[%d]", i), "must be a scope without spaces or commas (got %q)", s)
		}
	}
}
