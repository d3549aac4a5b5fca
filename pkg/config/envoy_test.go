package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/config"
)

func TestLoad_Envoy(t *testing.T) {
	t.Parallel()
	defaults := config.EnvoyXDS{
		ListenerPort: 8080,
		App:          "127.0.0.1:8081",
		Sidecar:      "127.0.0.1:9191",
		Timeout:      config.Duration(250 * time.Millisecond),
	}
	tests := []struct {
		name string
		file string
		env  []string
		want func(*config.EnvoyXDS)
	}{
		{name: "defaults", want: func(*config.EnvoyXDS) {}},
		{
			name: "file",
			file: `envoy:
  enabled: true
  listener_port: 10000
  app: orders.internal:80
  sidecar: "[::1]:9191"
  timeout: 1s
  failure_mode_allow: true
  required_scopes: [read, "orders:write"]
`,
			want: func(e *config.EnvoyXDS) {
				*e = config.EnvoyXDS{
					Enabled: true, ListenerPort: 10000, App: "orders.internal:80", Sidecar: "[::1]:9191",
					Timeout: config.Duration(time.Second), FailureModeAllow: true, RequiredScopes: []string{"read", "orders:write"},
				}
			},
		},
		{
			name: "environment",
			env: []string{
				"TALOS_ENVOY_ENABLED=true",
				"TALOS_ENVOY_LISTENER_PORT=10000",
				"TALOS_ENVOY_APP=app:8081",
				"TALOS_ENVOY_SIDECAR=talos-proxy:9191",
				"TALOS_ENVOY_TIMEOUT=0.5",
				"TALOS_ENVOY_FAILURE_MODE_ALLOW=true",
				"TALOS_ENVOY_REQUIRED_SCOPES=read, write",
			},
			want: func(e *config.EnvoyXDS) {
				*e = config.EnvoyXDS{
					Enabled: true, ListenerPort: 10000, App: "app:8081", Sidecar: "talos-proxy:9191",
					Timeout: config.Duration(500 * time.Millisecond), FailureModeAllow: true, RequiredScopes: []string{"read", "write"},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tt.file != "" {
				files = []string{writeFile(t, "talos.yaml", tt.file)}
			}
			got := mustLoad(t, files, append(tt.env, requiredEnv...))
			want := defaults
			tt.want(&want)
			if d := cmp.Diff(want, got.Envoy, equateEmpty); d != "" {
				t.Errorf("envoy section (-want +got):\n%s", d)
			}
			if len(got.Warnings) != 0 || len(got.Unsupported()) != 0 {
				t.Errorf("Warnings = %q, Unsupported() = %q; want none", got.Warnings, got.Unsupported())
			}
		})
	}
}

func TestLoad_EnvoyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		env  []string
		want string
	}{
		{name: "unknown key", file: "envoy: {listen_port: 80}\n", want: "envoy.listen_port: unknown key"},
		{name: "port 0", file: "envoy: {listener_port: 0}\n", want: "envoy.listener_port: must be >= 1"},
		{name: "port too high", env: []string{"TALOS_ENVOY_LISTENER_PORT=65536"}, want: "envoy.listener_port: must be <= 65535"},
		{name: "app with a scheme", file: "envoy: {app: 'http://app:80'}\n", want: "envoy.app"},
		{name: "sidecar without port", env: []string{"TALOS_ENVOY_SIDECAR=localhost"}, want: "envoy.sidecar"},
		{name: "negative timeout", file: "envoy: {timeout: -1s}\n", want: "envoy.timeout"},
		{name: "zero timeout", file: "envoy: {timeout: 0s}\n", want: "envoy.timeout: must be greater than 0"},
		{name: "scope with a space", file: "envoy: {required_scopes: ['read write']}\n", want: "envoy.required_scopes[0]"},
		{name: "not a list", file: "envoy: {required_scopes: read}\n", want: "envoy.required_scopes: must be array"},
		{name: "sidecar port 0, even when disabled", file: "envoy: {enabled: false, sidecar: '127.0.0.1:0'}\n", want: "envoy.sidecar: must be host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tt.file != "" {
				files = []string{writeFile(t, "talos.yaml", tt.file)}
			}
			_, err := config.Load(files, append(tt.env, requiredEnv...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestConfig_Validate_Envoy covers what the schema cannot see: values set in
// Go, and ports past the pattern's reach.
func TestConfig_Validate_Envoy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*config.EnvoyXDS)
		want   string
	}{
		{"defaults", func(*config.EnvoyXDS) {}, ""},
		{"enabled with scopes", func(e *config.EnvoyXDS) { e.Enabled, e.RequiredScopes = true, []string{"read", "a:b"} }, ""},
		{"port 0", func(e *config.EnvoyXDS) { e.ListenerPort = 0 }, "envoy.listener_port: must be between 1 and 65535 (got 0)"},
		{"app port too high", func(e *config.EnvoyXDS) { e.App = "127.0.0.1:65536" }, `envoy.app: must be host:port with a port from 1 to 65535 (got "127.0.0.1:65536")`},
		{"empty sidecar", func(e *config.EnvoyXDS) { e.Sidecar = "" }, "envoy.sidecar: must be host:port"},
		{"zero timeout", func(e *config.EnvoyXDS) { e.Timeout = 0 }, "envoy.timeout: must be greater than 0"},
		{"empty scope", func(e *config.EnvoyXDS) { e.RequiredScopes = []string{"read", ""} }, "envoy.required_scopes[1]: must be a scope without spaces or commas"},
		{"scope with a comma", func(e *config.EnvoyXDS) { e.RequiredScopes = []string{"read,write"} }, "envoy.required_scopes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := withRequired()
			tt.mutate(&c.Envoy)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
