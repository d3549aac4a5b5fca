package config_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/config"
)

const (
	testToken       = "tok-0123456789abcdef0123456789abcdef"
	testRedisSecret = "redis-secret-0123456789abcdef0123456789"
)

func mustLoadProxy(t *testing.T, files []string, env []string) config.Config {
	t.Helper()
	cfg, err := config.LoadProxy(files, env)
	if err != nil {
		t.Fatalf("LoadProxy: %v", err)
	}
	return cfg
}

// proxyYAML is what testdata/proxy.yaml sets.
func proxyYAML() config.Config {
	want := config.Defaults()
	want.Log = config.Log{Level: config.LogLevelWarn, Format: config.LogFormatText}
	want.Proxy = config.Proxy{
		Upstream:        "talos-control-plane.talos.svc:4421",
		RateLimit:       config.Defaults().Proxy.RateLimit,
		UpstreamToken:   config.NewSecret(testToken),
		UpstreamTimeout: config.Duration(750 * time.Millisecond),
		UpstreamRetries: 3,
		Tenant:          "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f",
		UpstreamTLS:     config.ClientTLS{MinVersion: config.TLSVersion12},
		ExtAuthz:        config.ProxyListener{Host: "127.0.0.1", Port: 10191, TLS: offTLS},
		HTTP:            config.ProxyListener{Host: "127.0.0.1", Port: 10430, TLS: offTLS},
		Metrics:         config.ProxyListener{Host: "0.0.0.0", Port: 10432, TLS: offTLS},
		Cache: config.ProxyCache{
			TTL:         config.Duration(30 * time.Second),
			NegativeTTL: 0,
			Memory:      config.ProxyMemoryCache{MaxSize: 128 << 20},
			Redis: config.ProxyRedis{
				Enabled: true,
				Redis: config.Redis{
					Addrs:           []string{"redis-0:6379", "redis-1:6379"},
					Password:        config.NewSecret("proxy-redis-password"),
					DB:              3,
					PoolSize:        20,
					Timeout:         config.Duration(50 * time.Millisecond),
					MinIdleConns:    1,
					ConnMaxIdleTime: config.Duration(time.Minute),
					ConnMaxLifetime: config.Duration(10 * time.Minute),
					TLS:             config.RedisTLS{Enabled: true, MinVersion: config.TLSVersion12},
				},
				KeyPrefix: "shared:talos:",
				Secret:    config.NewSecret(testRedisSecret),
			},
		},
		CheckTimeout:      config.Duration(150 * time.Millisecond),
		StaleIfError:      config.Duration(10 * time.Minute),
		Invalidation:      config.ProxyInvalidation{Enabled: true, MaxStaleness: config.Duration(15 * time.Second)},
		CredentialHeaders: []string{"x-api-key", "authorization", "x-goog-api-key"},
		ClientIPHeaders:   []string{"x-forwarded-for", "x-real-ip"},
		Headers: config.ProxyHeaders{
			Prefix:           "x-auth-",
			Metadata:         []string{"plan", "teamId"},
			RemoveCredential: true,
		},
		FailureMode: config.ProxyFailureModeUnavailable,
		Limits:      config.ProxyLimits{Limits: config.Limits{MaxConnections: 512, MaxConcurrentStreams: 50}, MaxMessageBytes: 256 << 10},
		Shutdown:    config.Shutdown{DrainDelay: config.Duration(2 * time.Second), Timeout: config.Duration(20 * time.Second)},
		Readiness:   config.ProxyReadiness{WaitForUpstream: false},
	}
	return want
}

// offTLS is a listener's TLS block by default.
var offTLS = config.TLS{ClientAuth: config.ClientAuthNone, MinVersion: config.TLSVersion12}

func TestLoadProxy_Defaults(t *testing.T) {
	t.Parallel()
	// No file, no variable: a sidecar needs no issuer, secret or database.
	got := mustLoadProxy(t, nil, nil)
	if diff := cmp.Diff(config.Defaults(), got, equateEmpty); diff != "" {
		t.Errorf("LoadProxy(nothing) differs from Defaults (-want +got):\n%s", diff)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none", got.Warnings)
	}

	p := got.Proxy
	want := config.Proxy{
		Upstream:        "127.0.0.1:4421",
		UpstreamTimeout: config.Duration(2 * time.Second),
		CheckTimeout:    config.Duration(200 * time.Millisecond),
		UpstreamRetries: 2,
		UpstreamTLS:     config.ClientTLS{MinVersion: config.TLSVersion12},
		ExtAuthz:        config.ProxyListener{Host: "127.0.0.1", Port: 9191, TLS: offTLS},
		HTTP:            config.ProxyListener{Host: "127.0.0.1", Port: 4430, TLS: offTLS},
		Metrics:         config.ProxyListener{Host: "127.0.0.1", Port: 4432, TLS: offTLS},
		Cache: config.ProxyCache{
			TTL:         config.Duration(60 * time.Second),
			NegativeTTL: config.Duration(5 * time.Second),
			Memory:      config.ProxyMemoryCache{MaxSize: 64 << 20},
			Redis: config.ProxyRedis{
				// The same as cache.redis, but for the timeout.
				Redis: func() config.Redis {
					r := config.Defaults().Cache.Redis
					r.Timeout = config.Duration(100 * time.Millisecond)
					return r
				}(),
				KeyPrefix: "talos:v1:",
			},
		},
		StaleIfError:      config.Duration(5 * time.Minute),
		Invalidation:      config.ProxyInvalidation{Enabled: true, MaxStaleness: config.Duration(30 * time.Second)},
		CredentialHeaders: []string{"authorization", "x-api-key"},
		Headers:           config.ProxyHeaders{Prefix: "x-talos-"},
		FailureMode:       config.ProxyFailureModeDeny,
		Limits:            config.ProxyLimits{Limits: config.Limits{MaxConnections: 4096, MaxConcurrentStreams: 100}, MaxMessageBytes: 1 << 20},
		Shutdown:          config.Shutdown{DrainDelay: config.Duration(5 * time.Second), Timeout: config.Duration(10 * time.Second)},
		Readiness:         config.ProxyReadiness{WaitForUpstream: true},
		RateLimit: config.ProxyRateLimit{
			Backend: config.RateLimitBackendMemory, FailureMode: config.RateLimitFailOpen,
			Fallback: config.ProxyRateLimitFallbackMemory, Headers: true,
			Memory: config.RateLimitMemory{MaxKeys: 1_000_000}, Redis: config.RateLimitRedis{KeyPrefix: "talos:rl:"},
		},
	}
	if diff := cmp.Diff(want, p, equateEmpty); diff != "" {
		t.Errorf("proxy defaults mismatch (-want +got):\n%s", diff)
	}
	if p.ExtAuthz.Addr() != "127.0.0.1:9191" || p.HTTP.Addr() != "127.0.0.1:4430" || p.Metrics.Addr() != "127.0.0.1:4432" {
		t.Errorf("addrs = %s %s %s", p.ExtAuthz.Addr(), p.HTTP.Addr(), p.Metrics.Addr())
	}

	// Defaults hands out fresh slices.
	a, b := config.Defaults(), config.Defaults()
	a.Proxy.CredentialHeaders[0] = "changed"
	a.Proxy.Cache.Redis.Addrs[0] = "changed:1"
	if b.Proxy.CredentialHeaders[0] != "authorization" || b.Proxy.Cache.Redis.Addrs[0] != "localhost:6379" || b.Cache.Redis.Addrs[0] != "localhost:6379" {
		t.Error("Defaults() shares slices between calls")
	}
}

func TestLoadProxy_File(t *testing.T) {
	t.Parallel()
	got := mustLoadProxy(t, []string{"testdata/proxy.yaml"}, nil)
	if diff := cmp.Diff(proxyYAML(), got, equateEmpty); diff != "" {
		t.Errorf("LoadProxy(proxy.yaml) mismatch (-want +got):\n%s", diff)
	}
	if got.Proxy.ExtAuthz.Addr() != "127.0.0.1:10191" {
		t.Errorf("ExtAuthz.Addr() = %s", got.Proxy.ExtAuthz.Addr())
	}

	// talos serve reads the same file (plus what it requires) and gets the
	// same proxy section.
	serve := mustLoad(t, []string{"testdata/proxy.yaml"}, requiredEnv)
	if diff := cmp.Diff(got.Proxy, serve.Proxy, equateEmpty); diff != "" {
		t.Errorf("Load and LoadProxy disagree on the proxy section (-LoadProxy +Load):\n%s", diff)
	}
	if u := serve.Unsupported(); len(u) != 0 {
		t.Errorf("Unsupported() = %q, want no proxy keys", u)
	}
}

func TestLoadProxy_Env(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		want func(*config.Config)
	}{
		{
			name: "durations and scalars",
			env: []string{
				"TALOS_PROXY_CACHE_TTL=10s",
				"TALOS_PROXY_CACHE_NEGATIVE_TTL=0",
				"TALOS_PROXY_STALE_IF_ERROR=90",
				"TALOS_PROXY_UPSTREAM=10.0.0.7:5000",
				"TALOS_PROXY_UPSTREAM_TIMEOUT=500ms",
				"TALOS_PROXY_UPSTREAM_RETRIES=0",
				"TALOS_PROXY_TENANT=00000000-0000-0000-0000-000000000001",
				"TALOS_PROXY_EXTAUTHZ_PORT=0",
				"TALOS_PROXY_HTTP_HOST=127.0.0.1",
				"TALOS_PROXY_METRICS_PORT=0",
				"TALOS_PROXY_FAILURE_MODE=unavailable",
				"TALOS_PROXY_HEADERS_PREFIX=x-key-",
				"TALOS_PROXY_HEADERS_REMOVE_CREDENTIAL=true",
				"TALOS_PROXY_CACHE_MEMORY_MAX_SIZE=1048576",
			},
			want: func(c *config.Config) {
				p := &c.Proxy
				p.Cache.TTL = config.Duration(10 * time.Second)
				p.Cache.NegativeTTL = 0
				p.StaleIfError = config.Duration(90 * time.Second)
				p.Upstream = "10.0.0.7:5000"
				p.UpstreamTimeout = config.Duration(500 * time.Millisecond)
				p.UpstreamRetries = 0
				p.Tenant = "00000000-0000-0000-0000-000000000001"
				p.ExtAuthz.Port = 0
				p.HTTP.Host = "127.0.0.1"
				p.Metrics.Port = 0
				p.FailureMode = config.ProxyFailureModeUnavailable
				p.Headers.Prefix = "x-key-"
				p.Headers.RemoveCredential = true
				p.Cache.Memory.MaxSize = 1 << 20
			},
		},
		{
			name: "comma-separated header list",
			env:  []string{"TALOS_PROXY_CREDENTIAL_HEADERS=x-api-key, authorization,,"},
			want: func(c *config.Config) { c.Proxy.CredentialHeaders = []string{"x-api-key", "authorization"} },
		},
		{
			name: "JSON header list",
			env:  []string{`TALOS_PROXY_CLIENT_IP_HEADERS=["cf-connecting-ip", "x-forwarded-for"]`},
			want: func(c *config.Config) { c.Proxy.ClientIPHeaders = []string{"cf-connecting-ip", "x-forwarded-for"} },
		},
		{
			name: "indexed header list",
			env: []string{
				"TALOS_PROXY_CREDENTIAL_HEADERS_1=authorization",
				"TALOS_PROXY_CREDENTIAL_HEADERS_0=x-token",
			},
			want: func(c *config.Config) { c.Proxy.CredentialHeaders = []string{"x-token", "authorization"} },
		},
		{
			name: "metadata fields",
			env:  []string{"TALOS_PROXY_HEADERS_METADATA=plan,teamId"},
			want: func(c *config.Config) { c.Proxy.Headers.Metadata = []string{"plan", "teamId"} },
		},
		{
			name: "redis block and token",
			env: []string{
				"TALOS_PROXY_UPSTREAM_TOKEN=" + testToken,
				"TALOS_PROXY_CACHE_REDIS_ENABLED=true",
				"TALOS_PROXY_CACHE_REDIS_ADDRS=r1:6379,r2:6380",
				"TALOS_PROXY_CACHE_REDIS_PASSWORD=pw",
				"TALOS_PROXY_CACHE_REDIS_DB=1",
				"TALOS_PROXY_CACHE_REDIS_TIMEOUT=250ms",
				"TALOS_PROXY_CACHE_REDIS_TLS_ENABLED=true",
				"TALOS_PROXY_CACHE_REDIS_KEY_PREFIX=tenant-a:talos:",
				"TALOS_PROXY_CACHE_REDIS_SECRET=" + testRedisSecret,
				"TALOS_PROXY_CHECK_TIMEOUT=100ms",
			},
			want: func(c *config.Config) {
				p := &c.Proxy
				p.UpstreamToken = config.NewSecret(testToken)
				p.Cache.Redis.Enabled = true
				p.Cache.Redis.Addrs = []string{"r1:6379", "r2:6380"}
				p.Cache.Redis.Password = config.NewSecret("pw")
				p.Cache.Redis.DB = 1
				p.Cache.Redis.Timeout = config.Duration(250 * time.Millisecond)
				p.Cache.Redis.TLS.Enabled = true
				p.Cache.Redis.KeyPrefix = "tenant-a:talos:"
				p.Cache.Redis.Secret = config.NewSecret(testRedisSecret)
				p.CheckTimeout = config.Duration(100 * time.Millisecond)
			},
		},
		{
			name: "empty value clears the client IP headers",
			env:  []string{"TALOS_PROXY_CLIENT_IP_HEADERS="},
			want: func(c *config.Config) { c.Proxy.ClientIPHeaders = []string{} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustLoadProxy(t, nil, tt.env)
			want := config.Defaults()
			tt.want(&want)
			if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			if len(got.Warnings) != 0 {
				t.Errorf("Warnings = %q, want none", got.Warnings)
			}
		})
	}
}

func TestLoadProxy_Precedence(t *testing.T) {
	t.Parallel()
	env := []string{"TALOS_PROXY_CACHE_TTL=10s", "TALOS_PROXY_CREDENTIAL_HEADERS=x-token"}
	got := mustLoadProxy(t, []string{"testdata/proxy.yaml"}, env)
	want := proxyYAML()
	want.Proxy.Cache.TTL = config.Duration(10 * time.Second)
	want.Proxy.CredentialHeaders = []string{"x-token"}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("env over file mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadProxy_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string // YAML content; "" means no file
		env  []string
		want []string // every string must appear in the error
	}{
		{
			name: "unknown key under proxy",
			file: "proxy:\n  cache:\n    memroy: {max_size: 1048576}\n",
			want: []string{"proxy.cache.memroy: unknown key"},
		},
		{
			name: "unknown key under the squashed redis block",
			file: "proxy:\n  cache:\n    redis: {enabled: true, prefix: x}\n",
			want: []string{"proxy.cache.redis.prefix: unknown key"},
		},
		{
			name: "limits out of range",
			file: "proxy: {limits: {max_connections: 0, max_message_bytes: 1073741824}}\n",
			want: []string{"proxy.limits.max_connections", "proxy.limits.max_message_bytes"},
		},
		{
			name: "shutdown timeout zero",
			file: "proxy: {shutdown: {timeout: 0s}}\n",
			want: []string{"proxy.shutdown.timeout: must be greater than 0"},
		},
		{
			name: "shutdown above the maxima",
			env:  []string{"TALOS_PROXY_SHUTDOWN_DRAIN_DELAY=6m", "TALOS_PROXY_SHUTDOWN_TIMEOUT=11m"},
			want: []string{"proxy.shutdown.drain_delay: must be between 0 and 5m0s (got 6m0s)", "proxy.shutdown.timeout: must be greater than 0 and at most 10m0s (got 11m0s)"},
		},
		{
			name: "bad failure mode",
			file: "proxy: {failure_mode: allow}\n",
			want: []string{`proxy.failure_mode: must be one of deny, unavailable (got "allow")`},
		},
		{
			name: "uppercase credential header",
			file: "proxy: {credential_headers: [Authorization]}\n",
			want: []string{`proxy.credential_headers[0]: must be a lowercase HTTP header name`, `(got "Authorization")`},
		},
		{
			name: "uppercase header in the environment names the variable",
			env:  []string{"TALOS_PROXY_CLIENT_IP_HEADERS=x-real-ip,X-Forwarded-For"},
			want: []string{"environment variable TALOS_PROXY_CLIENT_IP_HEADERS: proxy.client_ip_headers[1]: must be a lowercase HTTP header name"},
		},
		{
			name: "header with a space",
			file: "proxy: {client_ip_headers: [\"x forwarded\"]}\n",
			want: []string{"proxy.client_ip_headers[0]: must be a lowercase HTTP header name"},
		},
		{
			name: "duplicate header",
			file: "proxy: {credential_headers: [x-api-key, authorization, x-api-key]}\n",
			want: []string{"proxy.credential_headers: items 0 and 2 are the same"},
		},
		{
			name: "no credential header",
			env:  []string{"TALOS_PROXY_CREDENTIAL_HEADERS="},
			want: []string{"environment variable TALOS_PROXY_CREDENTIAL_HEADERS: proxy.credential_headers: must have at least 1 items"},
		},
		{
			name: "prefix without a trailing dash",
			file: "proxy: {headers: {prefix: x-talos}}\n",
			want: []string{`proxy.headers.prefix: must match`, `(got "x-talos")`},
		},
		{
			name: "uppercase prefix",
			file: "proxy: {headers: {prefix: X-Talos-}}\n",
			want: []string{`proxy.headers.prefix: must match`},
		},
		{
			name: "metadata fields naming the same header",
			file: "proxy: {headers: {metadata: [teamId, teamid]}}\n",
			want: []string{`proxy.headers.metadata[1]: "teamid" names the same header as proxy.headers.metadata[0]`},
		},
		{
			name: "upstream with a scheme",
			file: "proxy: {upstream: \"dns:///talos:4421\"}\n",
			want: []string{`proxy.upstream: must be host:port, without a scheme (got "dns:///talos:4421")`},
		},
		{
			name: "upstream port out of range",
			env:  []string{"TALOS_PROXY_UPSTREAM=talos:70000"},
			want: []string{`proxy.upstream: must be host:port with a port from 1 to 65535 (got "talos:70000")`},
		},
		{
			name: "upstream without a host",
			file: "proxy: {upstream: \":4421\"}\n",
			want: []string{"proxy.upstream: must be host:port"},
		},
		{
			name: "too many retries",
			file: "proxy: {upstream_retries: 11}\n",
			want: []string{"proxy.upstream_retries: must be <= 10 (got 11)"},
		},
		{
			name: "zero upstream timeout",
			file: "proxy: {upstream_timeout: 0s}\n",
			want: []string{"proxy.upstream_timeout: must be greater than 0"},
		},
		{
			name: "zero cache ttl",
			file: "proxy: {cache: {ttl: 0}}\n",
			want: []string{"proxy.cache.ttl: must be greater than 0"},
		},
		{
			name: "negative duration",
			file: "proxy: {stale_if_error: -1m}\n",
			want: []string{"proxy.stale_if_error: must be a Go duration"},
		},
		{
			name: "memory cache below 1 MiB",
			file: "proxy: {cache: {memory: {max_size: 1000}}}\n",
			want: []string{"proxy.cache.memory.max_size: must be >= 1048576 (got 1000)"},
		},
		{
			name: "tenant is not a UUID",
			file: "proxy: {tenant: acme}\n",
			want: []string{"proxy.tenant: must match"},
		},
		{
			name: "ports clash",
			file: "proxy: {http: {port: 9191}}\n",
			want: []string{"proxy.http.port: port 9191 is already used by proxy.extauthz.port"},
		},
		{
			name: "redis enabled without addresses",
			env:  []string{"TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_ADDRS="},
			want: []string{"TALOS_PROXY_CACHE_REDIS_ADDRS: proxy.cache.redis.addrs: must have at least 1 items"},
		},
		{
			name: "short upstream token is not echoed",
			env:  []string{"TALOS_PROXY_UPSTREAM_TOKEN=hunter2-is-short"},
			want: []string{"proxy.upstream_token: must be at least 32 characters, got 16"},
		},
		{
			name: "log is checked too",
			file: "log: {level: verbose}\n",
			want: []string{"log.level: must be one of debug, info, warn, error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tt.file != "" {
				files = []string{writeFile(t, "proxy.yaml", tt.file)}
			}
			_, err := config.LoadProxy(files, tt.env)
			if err == nil {
				t.Fatalf("LoadProxy succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error contains the token: %v", err)
			}
		})
	}
}

// TestLoad_ProxySection: talos serve schema-checks the proxy section but
// does not apply the proxy's cross-field rules, and never requires it.
func TestLoad_ProxySection(t *testing.T) {
	t.Parallel()
	t.Run("schema errors fail serve too", func(t *testing.T) {
		t.Parallel()
		file := writeFile(t, "c.yaml", "proxy: {failure_mode: open, credential_headers: [X-Api-Key]}\n")
		_, err := config.Load([]string{file}, requiredEnv)
		for _, w := range []string{"proxy.failure_mode: must be one of deny, unavailable", "proxy.credential_headers[0]: must be a lowercase HTTP header name"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Load() = %v, want an error containing %q", err, w)
			}
		}
	})
	t.Run("proxy rules do not fail serve", func(t *testing.T) {
		t.Parallel()
		file := writeFile(t, "c.yaml", "proxy: {http: {port: 9191}, cache: {ttl: 0}}\n")
		got := mustLoad(t, []string{file}, requiredEnv)
		if got.Proxy.HTTP.Port != 9191 {
			t.Errorf("proxy.http.port = %d, want 9191", got.Proxy.HTTP.Port)
		}
		if err := got.ValidateProxy(); err == nil {
			t.Error("ValidateProxy() = nil, want the port clash")
		}
	})
	t.Run("serve still requires its keys", func(t *testing.T) {
		t.Parallel()
		_, err := config.Load([]string{"testdata/proxy.yaml"}, nil)
		if err == nil || !strings.Contains(err.Error(), "secrets.hmac.current is required") {
			t.Errorf("Load(proxy.yaml) = %v, want secrets.hmac.current is required", err)
		}
	})
}

func TestLoadProxy_WarnsAboutHMACSecret(t *testing.T) {
	t.Parallel()
	got := mustLoadProxy(t, nil, requiredEnv)
	want := []string{"secrets.hmac.current is set but talos proxy does not use it; keep the HMAC secret off sidecar hosts"}
	if diff := cmp.Diff(want, got.Warnings); diff != "" {
		t.Errorf("Warnings mismatch (-want +got):\n%s", diff)
	}
	for _, w := range got.Warnings {
		if strings.Contains(w, testSecret) {
			t.Errorf("warning contains the secret: %q", w)
		}
	}
}

func TestConfig_ValidateProxy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		wantErr string // "" means valid
	}{
		{"defaults", func(*config.Config) {}, ""},
		{"no issuer, secret or database needed", func(c *config.Config) {
			c.Credentials.Issuer, c.Secrets.HMAC.Current, c.DB.DSN = "", config.Secret{}, config.Secret{}
		}, ""},
		{"serve sections are not checked", func(c *config.Config) { c.Serve.HTTP.MaxBodyBytes = 0 }, ""},
		{"port 0 means any free port", func(c *config.Config) {
			c.Proxy.ExtAuthz.Port, c.Proxy.HTTP.Port, c.Proxy.Metrics.Port = 0, 0, 0
		}, ""},
		{"same port on different hosts", func(c *config.Config) {
			c.Proxy.HTTP.Host, c.Proxy.Metrics.Host = "127.0.0.1", "10.0.0.1"
			c.Proxy.Metrics.Port = c.Proxy.HTTP.Port
		}, ""},
		{"same port on a wildcard host", func(c *config.Config) {
			c.Proxy.Metrics.Port = c.Proxy.ExtAuthz.Port
		}, "proxy.metrics.port: port 9191 is already used by proxy.extauthz.port"},
		{"port out of range", func(c *config.Config) { c.Proxy.ExtAuthz.Port = -1 }, "proxy.extauthz.port: must be between 0 and 65535 (got -1)"},
		{"IPv6 upstream", func(c *config.Config) { c.Proxy.Upstream = "[::1]:4421" }, ""},
		{"no connections", func(c *config.Config) { c.Proxy.Limits.MaxConnections = 0 }, "proxy.limits.max_connections: must be between 1 and 1048576 (got 0)"},
		{"no streams", func(c *config.Config) { c.Proxy.Limits.MaxConcurrentStreams = 0 }, "proxy.limits.max_concurrent_streams: must be between 1 and 1048576 (got 0)"},
		{"tiny messages", func(c *config.Config) { c.Proxy.Limits.MaxMessageBytes = 1024 }, "proxy.limits.max_message_bytes: must be between 65536 and 67108864 (got 1024)"},
		{"upstream without a port", func(c *config.Config) { c.Proxy.Upstream = "talos" }, "proxy.upstream: must be host:port"},
		{"upstream port 0", func(c *config.Config) { c.Proxy.Upstream = "talos:0" }, "proxy.upstream: must be host:port with a port from 1 to 65535"},
		{"upstream port not a number", func(c *config.Config) { c.Proxy.Upstream = "talos:grpc" }, "proxy.upstream"},
		{"upstream URL", func(c *config.Config) { c.Proxy.Upstream = "http://talos:4421" }, "proxy.upstream"},
		{"token of 32 characters", func(c *config.Config) { c.Proxy.UpstreamToken = config.NewSecret(testToken) }, ""},
		{"short token", func(c *config.Config) {
			c.Proxy.UpstreamToken = config.NewSecret("hunter2")
		}, "proxy.upstream_token: must be at least 32 characters, got 7"},
		{"negative retries", func(c *config.Config) { c.Proxy.UpstreamRetries = -1 }, "proxy.upstream_retries: must be between 0 and 10"},
		{"tenant UUID", func(c *config.Config) { c.Proxy.Tenant = "6F1C2D3E-4B5A-4C7D-8E9F-0A1B2C3D4E5F" }, ""},
		{"tenant not a UUID", func(c *config.Config) { c.Proxy.Tenant = "acme" }, `proxy.tenant: must be empty or a tenant UUID (got "acme")`},
		{"zero upstream timeout", func(c *config.Config) { c.Proxy.UpstreamTimeout = 0 }, "proxy.upstream_timeout: must be greater than 0"},
		{"negative upstream timeout", func(c *config.Config) { c.Proxy.UpstreamTimeout = -1 }, "proxy.upstream_timeout: must not be negative"},
		{"zero ttl", func(c *config.Config) { c.Proxy.Cache.TTL = 0 }, "proxy.cache.ttl: must be greater than 0"},
		{"zero negative ttl disables negative caching", func(c *config.Config) { c.Proxy.Cache.NegativeTTL = 0 }, ""},
		{"negative negative ttl", func(c *config.Config) { c.Proxy.Cache.NegativeTTL = -1 }, "proxy.cache.negative_ttl: must not be negative"},
		{"zero stale-if-error disables it", func(c *config.Config) { c.Proxy.StaleIfError = 0 }, ""},
		{"negative stale-if-error", func(c *config.Config) { c.Proxy.StaleIfError = -1 }, "proxy.stale_if_error: must not be negative"},
		{"memory cache below 1 MiB", func(c *config.Config) {
			c.Proxy.Cache.Memory.MaxSize = 1<<20 - 1
		}, "proxy.cache.memory.max_size: must be at least 1048576 bytes (1 MiB), got 1048575"},
		{"disabled redis is not checked", func(c *config.Config) {
			c.Proxy.Cache.Redis.Addrs, c.Proxy.Cache.Redis.Timeout, c.Proxy.Cache.Redis.KeyPrefix = nil, 0, ""
		}, ""},
		{"zero check timeout", func(c *config.Config) { c.Proxy.CheckTimeout = 0 }, "proxy.check_timeout: must be greater than 0"},
		{"negative check timeout", func(c *config.Config) { c.Proxy.CheckTimeout = -1 }, "proxy.check_timeout: must not be negative"},
		{"enabled redis", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.Secret = config.NewSecret(testRedisSecret)
		}, ""},
		{"enabled redis without a secret", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
		}, "proxy.cache.redis.secret: must be set when proxy.cache.redis.enabled is true"},
		{"enabled redis with a short secret", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.Secret = config.NewSecret("hunter2")
		}, "proxy.cache.redis.secret: must be at least 32 characters, got 7"},
		{"enabled redis with the HMAC secret", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Secrets.HMAC.Current = config.NewSecret("hunter2-" + testRedisSecret)
			c.Proxy.Cache.Redis.Secret = config.NewSecret("hunter2-" + testRedisSecret)
		}, "proxy.cache.redis.secret: must not be the HMAC secret"},
		{"enabled redis without addresses", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.Addrs = nil
		}, "proxy.cache.redis.addrs: must not be empty when proxy.cache.redis.enabled is true"},
		{"enabled redis with a bad address", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.Addrs = []string{"redis:6379", "redis"}
		}, `proxy.cache.redis.addrs[1]: must be host:port with a port from 1 to 65535 (got "redis")`},
		{"enabled redis without a timeout", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.Timeout = 0
		}, "proxy.cache.redis.timeout: must be greater than 0"},
		{"enabled redis with an empty key prefix", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.KeyPrefix = ""
		}, "proxy.cache.redis.key_prefix: must be 1 to 64 characters without spaces"},
		{"enabled redis with a key prefix with a space", func(c *config.Config) {
			c.Proxy.Cache.Redis.Enabled = true
			c.Proxy.Cache.Redis.KeyPrefix = "talos v1:"
		}, "proxy.cache.redis.key_prefix"},
		{"no credential headers", func(c *config.Config) { c.Proxy.CredentialHeaders = nil }, "proxy.credential_headers: must not be empty"},
		{"empty header name", func(c *config.Config) {
			c.Proxy.CredentialHeaders = []string{"authorization", ""}
		}, `proxy.credential_headers[1]: must be a lowercase HTTP header name (got "")`},
		{"uppercase header name", func(c *config.Config) {
			c.Proxy.CredentialHeaders = []string{"X-Api-Key"}
		}, `proxy.credential_headers[0]: must be a lowercase HTTP header name (got "X-Api-Key")`},
		{"header name with a colon", func(c *config.Config) {
			c.Proxy.ClientIPHeaders = []string{"x-real-ip:"}
		}, "proxy.client_ip_headers[0]: must be a lowercase HTTP header name"},
		{"duplicate header name", func(c *config.Config) {
			c.Proxy.ClientIPHeaders = []string{"x-real-ip", "x-forwarded-for", "x-real-ip"}
		}, `proxy.client_ip_headers[2]: "x-real-ip" is already listed at proxy.client_ip_headers[0]`},
		{"token characters are allowed", func(c *config.Config) {
			c.Proxy.CredentialHeaders = []string{"x-api_key.v2", "x~!#$%&'*+^`|"}
		}, ""},
		{"prefix without a trailing dash", func(c *config.Config) { c.Proxy.Headers.Prefix = "x-talos" }, "proxy.headers.prefix: must be a lowercase header name ending with '-'"},
		{"uppercase prefix", func(c *config.Config) { c.Proxy.Headers.Prefix = "X-Talos-" }, "proxy.headers.prefix"},
		{"empty prefix", func(c *config.Config) { c.Proxy.Headers.Prefix = "" }, "proxy.headers.prefix"},
		{"metadata field with a space", func(c *config.Config) {
			c.Proxy.Headers.Metadata = []string{"team id"}
		}, "proxy.headers.metadata[0]: must be a metadata field usable in a header name"},
		{"metadata fields differing in case", func(c *config.Config) {
			c.Proxy.Headers.Metadata = []string{"Plan", "plan"}
		}, `proxy.headers.metadata[1]: "plan" names the same header as proxy.headers.metadata[0]`},
		{"unknown failure mode", func(c *config.Config) { c.Proxy.FailureMode = "allow" }, `proxy.failure_mode: must be deny or unavailable (got "allow")`},
		{"unknown log level", func(c *config.Config) { c.Log.Level = "trace" }, "log.level"},
		{"unknown log format", func(c *config.Config) { c.Log.Format = "xml" }, "log.format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config.Defaults()
			tt.mutate(&c)
			err := c.ValidateProxy()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateProxy() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("ValidateProxy() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("ValidateProxy() = %q, want it to contain %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error contains the token: %v", err)
			}
		})
	}
}

// TestConfig_Validate_IgnoresProxy: the proxy section never fails talos
// serve's Validate.
func TestConfig_Validate_IgnoresProxy(t *testing.T) {
	t.Parallel()
	c := withRequired()
	c.Proxy = config.Proxy{FailureMode: "allow", CredentialHeaders: []string{"Bad Header"}}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil: serve ignores the proxy section", err)
	}
	if c.ValidateProxy() == nil {
		t.Error("ValidateProxy() = nil for an empty proxy section")
	}
}

func TestConfig_Unsupported_Proxy(t *testing.T) {
	t.Parallel()
	c := proxyYAML()
	c.Proxy.ClientIPHeaders = []string{"x-real-ip"}
	if u := c.Unsupported(); len(u) != 0 {
		t.Errorf("Unsupported() = %q, want no proxy keys", u)
	}
}

// TestConfig_MarshalJSON_Proxy: the squashed Redis block prints its keys
// beside enabled and key_prefix, secrets redacted, and the output loads back.
func TestConfig_MarshalJSON_Proxy(t *testing.T) {
	t.Parallel()
	want := mustLoadProxy(t, []string{"testdata/proxy.yaml"}, nil)
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	proxy := doc["proxy"].(map[string]any)
	redis := proxy["cache"].(map[string]any)["redis"].(map[string]any)
	if redis["password"] != "[redacted]" || proxy["upstream_token"] != "[redacted]" || redis["secret"] != "[redacted]" {
		t.Errorf("secrets are not redacted: password %v, upstream_token %v, secret %v", redis["password"], proxy["upstream_token"], redis["secret"])
	}
	for _, k := range []string{"enabled", "addrs", "timeout", "tls", "key_prefix"} {
		if _, ok := redis[k]; !ok {
			t.Errorf("proxy.cache.redis has no %q in %v", k, redis)
		}
	}
	if strings.Contains(string(b), "proxy-redis-password") || strings.Contains(string(b), testToken) || strings.Contains(string(b), testRedisSecret) {
		t.Fatalf("a secret appears in %s", b)
	}

	// Put the secrets back, as an operator would after --print-config.
	redis["password"] = want.Proxy.Cache.Redis.Password.Value()
	redis["secret"] = want.Proxy.Cache.Redis.Secret.Value()
	proxy["upstream_token"] = want.Proxy.UpstreamToken.Value()
	b, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := mustLoadProxy(t, []string{writeFile(t, "printed.json", string(b))}, nil)
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

// TestReflectionOn: reflection defaults on for loopback listeners only, and
// an explicit setting wins.
func TestReflectionOn(t *testing.T) {
	t.Parallel()
	on, off := true, false
	for _, c := range []struct {
		host    string
		setting *bool
		want    bool
	}{
		{"127.0.0.1", nil, true}, {"::1", nil, true}, {"localhost", nil, true}, {"127.9.9.9", nil, true},
		{"0.0.0.0", nil, false}, {"", nil, false}, {"::", nil, false}, {"10.0.0.1", nil, false}, {"talos.internal", nil, false},
		{"0.0.0.0", &on, true}, {"127.0.0.1", &off, false},
	} {
		if got := (config.GRPC{Host: c.host, Reflection: c.setting}).ReflectionOn(); got != c.want {
			t.Errorf("serve.grpc host %q setting %v: %v, want %v", c.host, c.setting, got, c.want)
		}
		if got := (config.ProxyListener{Host: c.host, Reflection: c.setting}).ReflectionOn(); got != c.want {
			t.Errorf("proxy.extauthz host %q setting %v: %v, want %v", c.host, c.setting, got, c.want)
		}
	}
}

func TestValidateProxy_RateLimitRedisNeedsRedis(t *testing.T) {
	t.Parallel()
	c := config.Defaults()
	c.Proxy.RateLimit.Enabled = true
	c.Proxy.RateLimit.Backend = config.RateLimitBackendRedis
	err := c.ValidateProxy()
	if err == nil || !strings.Contains(err.Error(), "proxy.rate_limit.backend") {
		t.Fatalf("ValidateProxy() = %v, want a proxy.rate_limit.backend error", err)
	}
	c.Proxy.RateLimit.Backend = config.RateLimitBackendMemory
	if err := c.ValidateProxy(); err != nil {
		t.Fatalf("memory backend: %v", err)
	}
}
