package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/talos-project/talos/pkg/config"
)

const (
	testSecret  = "test-0123456789abcdef0123456789abcdef"
	testSecret2 = "two--0123456789abcdef0123456789abcdef"
	testIssuer  = "http://localhost:4420"
)

// requiredEnv sets the two keys without a default.
var requiredEnv = []string{
	"TALOS_CREDENTIALS_ISSUER=" + testIssuer,
	"TALOS_SECRETS_HMAC_CURRENT=" + testSecret,
}

// equateEmpty treats nil and empty slices alike: defaults use nil, decoded
// empty lists are empty.
var equateEmpty = cmpopts.EquateEmpty()

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, files []string, env []string) config.Config {
	t.Helper()
	cfg, err := config.Load(files, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func ptr[T any](v T) *T { return &v }

// withRequired returns Defaults with the two required keys set as requiredEnv
// sets them.
func withRequired() config.Config {
	c := config.Defaults()
	c.Credentials.Issuer = testIssuer
	c.Secrets.HMAC.Current = config.NewSecret(testSecret)
	return c
}

func TestLoad_Defaults(t *testing.T) {
	t.Parallel()
	got := mustLoad(t, nil, requiredEnv)
	if diff := cmp.Diff(withRequired(), got, equateEmpty); diff != "" {
		t.Errorf("Load(no files) differs from Defaults (-want +got):\n%s", diff)
	}
	if got.Serve.HTTP.Addr() != "0.0.0.0:4420" || got.Serve.GRPC.Addr() != "0.0.0.0:4421" || got.Serve.Metrics.Addr() != "0.0.0.0:4422" {
		t.Errorf("addrs = %s %s %s", got.Serve.HTTP.Addr(), got.Serve.GRPC.Addr(), got.Serve.Metrics.Addr())
	}
	if len(got.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none", got.Warnings)
	}
	if u := got.Unsupported(); len(u) != 0 {
		t.Errorf("Unsupported() = %q, want none for defaults", u)
	}
}

func TestLoad_TalosConfig(t *testing.T) {
	t.Parallel()
	got := mustLoad(t, []string{"testdata/talos.yaml"}, nil)

	want := config.Defaults()
	want.Serve.HTTP = config.HTTP{
		Host:         "127.0.0.1",
		Port:         8420,
		MaxBodyBytes: 1 << 20,
		CORS: config.CORS{
			Enabled:          true,
			AllowedOrigins:   []string{"https://*.example.com", "https://app.example.org"},
			AllowedMethods:   []string{"GET", "POST"},
			AllowedHeaders:   []string{"Authorization", "Content-Type", "X-Request-Id"},
			ExposedHeaders:   []string{"Content-Type", "Ory-Talos-Cache"},
			AllowCredentials: true,
			MaxAge:           config.Duration(10 * time.Minute),
		},
		ClientIPSource:     "CLIENT_IP_SOURCE_X_FORWARDED_FOR",
		ClientIP:           config.IPSourceXForwardedFor,
		TrustForwardedHost: true,
		RequestLog:         config.RequestLog{ExcludeHealthEndpoints: true},
		TLS:                want.Serve.HTTP.TLS,
	}
	want.Serve.Metrics = config.Metrics{Host: "127.0.0.1", Port: 8422, TLS: want.Serve.Metrics.TLS}
	want.Credentials = config.Credentials{
		Issuer: "https://talos.example.com",
		IssuerRetired: []config.RetiredIssuer{
			{Value: "https://old-talos.example.com"},
			{Value: "https://older-talos.example.com", ExpiresAt: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)},
		},
		ClockSkew: config.Duration(2 * time.Minute),
		APIKeys: config.APIKeys{
			Format:     config.KeyFormatV2,
			DefaultTTL: config.Duration(720 * time.Hour),
			MaxTTL:     config.Duration(8760 * time.Hour),
			Prefix: config.APIKeyPrefix{
				Current:       "talos",
				Retired:       []string{"ory_ak", "legacy"},
				PublicCurrent: "talos_pub",
				PublicRetired: []string{"pub_old"},
			},
		},
		ImportedKeys: config.ImportedKeys{Hashing: config.ImportHashingSHA512_256, MinLength: 16, MinEntropyBits: 64},
		DerivedTokens: config.DerivedTokens{
			DefaultTTL: config.Duration(15 * time.Minute),
			JWT: config.JWT{
				SigningKeyID: "key-2026",
				SigningKeys:  config.SigningKeys{URLs: []config.Secret{config.NewSecret("base64://eyJrZXlzIjpbXX0=")}},
			},
			Macaroon: config.Macaroon{Prefix: config.MacaroonPrefix{Current: "mt", Retired: []string{"mc"}}},
		},
	}
	want.Secrets.HMAC = config.HMAC{
		Current: config.NewSecret("cur-0123456789abcdef0123456789abcdef"),
		Retired: []config.RetiredSecret{
			{Value: config.NewSecret("old-0123456789abcdef0123456789abcdef")},
			{Value: config.NewSecret("exp-0123456789abcdef0123456789abcdef"), ExpiresAt: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)},
		},
	}
	want.DB.DSN = config.NewSecret("postgres://talos:pw@db:5432/talos?sslmode=disable&max_conns=20")
	want.Cache = config.Cache{
		Type:    config.CacheTypeRedis,
		Enabled: true,
		TTL:     config.Duration(30 * time.Second),
		Memory:  config.MemoryCache{MaxSize: 209715200, NumCounters: 20000},
		Redis: config.Redis{
			Addrs:           []string{"redis-0:6379", "redis-1:6379"},
			Password:        config.NewSecret("redis-password"),
			DB:              2,
			PoolSize:        50,
			Timeout:         config.Duration(time.Second),
			MinIdleConns:    4,
			ConnMaxIdleTime: config.Duration(10 * time.Minute),
			ConnMaxLifetime: config.Duration(time.Hour),
			TLS:             config.RedisTLS{Enabled: true, MinVersion: config.TLSVersion12},
		},
	}
	want.RateLimit.Enabled, want.RateLimit.Backend = true, config.RateLimitBackendRedis
	want.LastUsed = config.LastUsed{QueueSize: 20000, FlushSize: 200, FlushInterval: config.Duration(time.Minute), NumWorkers: 8}
	want.Log = config.Log{Level: config.LogLevelDebug, Format: config.LogFormatText}
	want.Tracing = config.Tracing{
		Enabled:        true,
		ServiceName:    "talos-prod",
		ServiceVersion: "26.2.0",
		Environment:    "production",
		Exporter:       "otlp",
		Endpoint:       "otel-collector:4317",
		SampleRate:     0.25,
	}
	want.Quota.APIKeysMax = 100000
	want.Multitenancy = config.Multitenancy{
		Enabled: true,
		Networks: []config.Network{
			{Hostname: "a.example.com", ID: "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", ConfigPath: "/etc/talos/tenants/a.yaml"},
			{Hostname: "b.example.com:4420", ID: "00000000-0000-0000-0000-000000000001"},
		},
	}

	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("Load(talos.yaml) mismatch (-want +got):\n%s", diff)
	}
	if got.DB.Driver() != config.DriverPostgres || got.DB.MigrateOnStart() {
		t.Errorf("DB.Driver() = %q, MigrateOnStart() = %v; want postgres, false", got.DB.Driver(), got.DB.MigrateOnStart())
	}
}

func TestLoad_JSON(t *testing.T) {
	t.Parallel()
	got := mustLoad(t, []string{"testdata/minimal.json"}, nil)
	want := config.Defaults()
	want.Credentials.Issuer = testIssuer
	want.Credentials.APIKeys.DefaultTTL = config.Duration(24 * time.Hour)
	want.Secrets.HMAC.Current = config.NewSecret("json-0123456789abcdef0123456789abcdef")
	want.DB.DSN = config.NewSecret("sqlite://./data/talos.db")
	want.DB.AutoMigrate = ptr(false)
	want.Serve.GRPC.Port = 0
	want.Serve.HTTP.MaxBodyBytes = 65536
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("Load(minimal.json) mismatch (-want +got):\n%s", diff)
	}
	if got.DB.MigrateOnStart() {
		t.Error("MigrateOnStart() = true with db.auto_migrate: false")
	}
}

func TestLoad_FileFormats(t *testing.T) {
	t.Parallel()
	const doc = `{"serve": {"http": {"port": 9000}}}`
	for _, name := range []string{"c.json", "c.JSON", "c.yaml", "c.yml", "c.conf", "config"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := mustLoad(t, []string{writeFile(t, name, doc)}, requiredEnv)
			if got.Serve.HTTP.Port != 9000 {
				t.Errorf("port = %d, want 9000", got.Serve.HTTP.Port)
			}
		})
	}
}

func TestLoad_Precedence(t *testing.T) {
	t.Parallel()
	base := writeFile(t, "base.yaml", `
serve:
  http: {port: 5000, host: 10.0.0.1}
  grpc: {port: 5001}
credentials:
  api_keys:
    prefix: {retired: [a, b, c]}
log: {level: warn}
`)
	override := writeFile(t, "override.yaml", `
serve:
  http: {port: 6000}
credentials:
  api_keys:
    prefix: {retired: [z]}
`)
	env := append([]string{"TALOS_SERVE_HTTP_PORT=7000", "TALOS_LOG_LEVEL=error"}, requiredEnv...)
	got := mustLoad(t, []string{base, override}, env)

	want := withRequired()
	want.Serve.HTTP.Port = 7000                                    // env beats both files
	want.Serve.HTTP.Host = "10.0.0.1"                              // first file, untouched by later sources
	want.Serve.GRPC.Port = 5001                                    // first file
	want.Credentials.APIKeys.Prefix.Retired = []string{"z"}        // a later list replaces, not merges
	want.Log.Level = config.LogLevelError                          // env beats file
	want.Serve.Metrics.Port = config.Defaults().Serve.Metrics.Port // default
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("precedence mismatch (-want +got):\n%s", diff)
	}
}

func TestLoad_Env(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		want func(*config.Config)
	}{
		{
			name: "nested underscore keys",
			env: []string{
				"TALOS_CREDENTIALS_API_KEYS_DEFAULT_TTL=48h",
				"TALOS_SECRETS_HMAC_CURRENT=" + testSecret2,
				"TALOS_SERVE_HTTP_PORT=8080",
				"TALOS_SERVE_HTTP_MAX_BODY_BYTES=2048",
				"TALOS_SERVE_HTTP_REQUEST_LOG_EXCLUDE_HEALTH_ENDPOINTS=true",
				"TALOS_CREDENTIALS_DERIVED_TOKENS_MACAROON_PREFIX_CURRENT=mac",
			},
			want: func(c *config.Config) {
				c.Credentials.APIKeys.DefaultTTL = config.Duration(48 * time.Hour)
				c.Secrets.HMAC.Current = config.NewSecret(testSecret2)
				c.Serve.HTTP.Port = 8080
				c.Serve.HTTP.MaxBodyBytes = 2048
				c.Serve.HTTP.RequestLog.ExcludeHealthEndpoints = true
				c.Credentials.DerivedTokens.Macaroon.Prefix.Current = "mac"
			},
		},
		{
			name: "duration as plain seconds",
			env:  []string{"TALOS_CREDENTIALS_CLOCK_SKEW=90"},
			want: func(c *config.Config) { c.Credentials.ClockSkew = config.Duration(90 * time.Second) },
		},
		{
			name: "comma-separated list",
			env:  []string{"TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED=old1, old2,,"},
			want: func(c *config.Config) { c.Credentials.APIKeys.Prefix.Retired = []string{"old1", "old2"} },
		},
		{
			name: "JSON list",
			env:  []string{`TALOS_SERVE_HTTP_CORS_ALLOWED_ORIGINS=["https://a.example", "https://b.example"]`},
			want: func(c *config.Config) {
				c.Serve.HTTP.CORS.AllowedOrigins = []string{"https://a.example", "https://b.example"}
			},
		},
		{
			name: "empty value clears a list",
			env:  []string{"TALOS_SERVE_HTTP_CORS_ALLOWED_METHODS="},
			want: func(c *config.Config) { c.Serve.HTTP.CORS.AllowedMethods = []string{} },
		},
		{
			name: "indexed list items",
			env: []string{
				"TALOS_CREDENTIALS_API_KEYS_PREFIX_PUBLIC_RETIRED_1=second",
				"TALOS_CREDENTIALS_API_KEYS_PREFIX_PUBLIC_RETIRED_0=first",
			},
			want: func(c *config.Config) { c.Credentials.APIKeys.Prefix.PublicRetired = []string{"first", "second"} },
		},
		{
			name: "retired secrets as a JSON array of both shapes",
			env:  []string{`TALOS_SECRETS_HMAC_RETIRED=["` + testSecret2 + `", {"value": "` + testSecret + `", "expires_at": "2027-01-01T00:00:00+01:00"}]`},
			want: func(c *config.Config) {
				c.Secrets.HMAC.Retired = []config.RetiredSecret{
					{Value: config.NewSecret(testSecret2)},
					{Value: config.NewSecret(testSecret), ExpiresAt: time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)},
				}
			},
		},
		{
			name: "retired secrets as indexed variables",
			env: []string{
				"TALOS_SECRETS_HMAC_RETIRED_0=" + testSecret2,
				`TALOS_SECRETS_HMAC_RETIRED_1={"value": "` + testSecret + `", "expires_at": "2027-01-01T00:00:00Z"}`,
			},
			want: func(c *config.Config) {
				c.Secrets.HMAC.Retired = []config.RetiredSecret{
					{Value: config.NewSecret(testSecret2)},
					{Value: config.NewSecret(testSecret), ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
				}
			},
		},
		{
			name: "retired secret as a bare comma list",
			env:  []string{"TALOS_SECRETS_HMAC_RETIRED=" + testSecret2},
			want: func(c *config.Config) {
				c.Secrets.HMAC.Retired = []config.RetiredSecret{{Value: config.NewSecret(testSecret2)}}
			},
		},
		{
			name: "secret list",
			env:  []string{"TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=" + testSecret + "," + testSecret2},
			want: func(c *config.Config) {
				c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret(testSecret)}, {Token: config.NewSecret(testSecret2)}}
			},
		},
		{
			name: "allowed hosts list",
			env:  []string{"TALOS_SERVE_HTTP_ALLOWED_HOSTS=talos.internal,talos.default.svc:4420,[::1]"},
			want: func(c *config.Config) {
				c.Serve.HTTP.AllowedHosts = []string{"talos.internal", "talos.default.svc:4420", "[::1]"}
			},
		},
		{
			name: "tri-state bool and float",
			env:  []string{"TALOS_DB_AUTO_MIGRATE=true", "TALOS_TRACING_SAMPLE_RATE=0.5", "TALOS_CACHE_MEMORY_MAX_SIZE=2097152"},
			want: func(c *config.Config) {
				c.DB.AutoMigrate = ptr(true)
				c.Tracing.SampleRate = 0.5
				c.Cache.Memory.MaxSize = 2097152
			},
		},
		{
			name: "multitenancy networks as JSON",
			env:  []string{`TALOS_MULTITENANCY_NETWORKS=[{"hostname": "a.example", "id": "00000000-0000-0000-0000-000000000001"}]`},
			want: func(c *config.Config) {
				c.Multitenancy.Networks = []config.Network{{Hostname: "a.example", ID: "00000000-0000-0000-0000-000000000001"}}
			},
		},
		{
			name: "lower-case and TALOS_TEST_ variables are not config",
			env:  []string{"talos_serve_http_port=1", "TALOS_TEST_POSTGRES_DSN=postgres://x"},
			want: func(*config.Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustLoad(t, nil, append(append([]string(nil), requiredEnv...), tt.env...))
			want := withRequired()
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

func TestLoad_EnvWarnings(t *testing.T) {
	t.Parallel()
	got := mustLoad(t, nil, append([]string{
		"TALOS_SERVE_HTTP_PROT=1",
		"TALOS_DB_DSN_EXTRA=1",
		"DB_DSN=sqlite://x.db",
		"TALOS_SERVE_HTTP_PORT=",
		"TALOS_SERVE_HTTP_CLIENT_IP_SOURCE=CLIENT_IP_SOURCE_CARRIER_PIGEON",
	}, requiredEnv...))
	want := []string{
		"environment variable DB_DSN is ignored: unlike Ory Talos, Talos reads only TALOS_ variables; use TALOS_DB_DSN",
		"environment variable TALOS_DB_DSN_EXTRA matches no config key; ignored",
		"environment variable TALOS_SERVE_HTTP_PROT matches no config key; ignored",
		"environment variable TALOS_SERVE_HTTP_PORT is empty; ignored",
		`serve.http.client_ip_source: unknown value "CLIENT_IP_SOURCE_CARRIER_PIGEON"; using the remote address`,
	}
	if diff := cmp.Diff(want, got.Warnings); diff != "" {
		t.Errorf("Warnings mismatch (-want +got):\n%s", diff)
	}
	if got.Serve.HTTP.Port != 4420 || got.Serve.HTTP.ClientIP != config.IPSourceRemoteAddr {
		t.Errorf("port = %d, ClientIP = %v; want defaults", got.Serve.HTTP.Port, got.Serve.HTTP.ClientIP)
	}
}

func TestLoad_Errors(t *testing.T) {
	t.Parallel()
	const short = "hunter2-is-short"
	tests := []struct {
		name string
		file string // YAML content; "" means no file
		ext  string // file extension, default .yaml
		env  []string
		// every string must appear in the error
		want []string
	}{
		{
			name: "unknown key names its path",
			file: "serve:\n  http:\n    prot: 8080\n",
			want: []string{"serve.http.prot: unknown key"},
		},
		{
			name: "unknown top-level key",
			file: "servce: {}\n",
			want: []string{"servce: unknown key"},
		},
		{
			name: "removed Ory Talos key gets a hint",
			file: "secrets:\n  default: [abc]\n",
			want: []string{"secrets.default: unknown key (removed in Ory Talos; use secrets.hmac.current)"},
		},
		{
			name: "wrong type",
			file: "serve:\n  http:\n    port: \"8080\"\n",
			want: []string{"serve.http.port: must be integer, got string"},
		},
		{
			name: "allowed host with a scheme",
			file: "serve:\n  http:\n    allowed_hosts: [\"http://talos.internal\"]\n",
			want: []string{"serve.http.allowed_hosts[0]: must match"},
		},
		{
			name: "wrong type in JSON",
			file: `{"cache": {"enabled": "yes"}}`,
			ext:  ".json",
			want: []string{"cache.enabled: must be boolean, got string"},
		},
		{
			name: "out of range",
			file: "serve:\n  metrics:\n    port: 70000\n",
			want: []string{"serve.metrics.port: must be <= 65535 (got 70000)"},
		},
		{
			name: "bad enum",
			file: "log:\n  level: verbose\n",
			want: []string{`log.level: must be one of debug, info, warn, error (got "verbose")`},
		},
		{
			name: "bad duration",
			file: "credentials:\n  clock_skew: 1d\n",
			want: []string{`credentials.clock_skew: must be a Go duration such as 90s, 15m or 8760h (no days), or a number of seconds (got "1d")`},
		},
		{
			name: "negative duration",
			file: "cache:\n  ttl: -5s\n",
			want: []string{`cache.ttl: must be a Go duration`},
		},
		{
			name: "bad retired expiry",
			file: "secrets:\n  hmac:\n    retired:\n      - {value: " + testSecret + ", expires_at: tomorrow}\n",
			want: []string{"secrets.hmac.retired[0].expires_at: must be an RFC 3339 date-time"},
		},
		{
			name: "several problems are all reported",
			file: "serve:\n  http:\n    port: -1\n    hots: x\n",
			want: []string{"serve.http.port: must be >= 0", "serve.http.hots: unknown key"},
		},
		{
			name: "invalid YAML",
			file: "serve: [\n",
			want: []string{"invalid YAML"},
		},
		{
			name: "invalid JSON",
			file: `{"serve": }`,
			ext:  ".json",
			want: []string{"invalid JSON"},
		},
		{
			name: "top level is not a mapping",
			file: "- a\n- b\n",
			want: []string{"top level must be a mapping of config keys, got a list"},
		},
		{
			name: "missing issuer",
			env:  []string{"TALOS_SECRETS_HMAC_CURRENT=" + testSecret},
			want: []string{"credentials.issuer is required"},
		},
		{
			name: "missing secret",
			env:  []string{"TALOS_CREDENTIALS_ISSUER=x"},
			want: []string{"secrets.hmac.current is required"},
		},
		{
			name: "empty secret means unset",
			file: "secrets:\n  hmac:\n    current: \"\"\n",
			env:  []string{"TALOS_CREDENTIALS_ISSUER=x"},
			want: []string{"secrets.hmac.current is required"},
		},
		{
			name: "env wrong type names the variable",
			env:  []string{"TALOS_SERVE_HTTP_PORT=http"},
			want: []string{`environment variable TALOS_SERVE_HTTP_PORT: serve.http.port: must be an integer (got "http")`},
		},
		{
			name: "env out of range names the variable",
			env:  []string{"TALOS_SERVE_GRPC_PORT=65536"},
			want: []string{"environment variable TALOS_SERVE_GRPC_PORT: serve.grpc.port: must be <= 65535"},
		},
		{
			name: "env indexes with a gap",
			env:  []string{"TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_0=a", "TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_2=c"},
			want: []string{"environment variable TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_2: indexes must run from TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_0 without gaps"},
		},
		{
			name: "env whole list and indexed",
			env:  []string{"TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED=a", "TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_0=b"},
			want: []string{"not both"},
		},
		{
			name: "cross-field rule",
			file: "credentials:\n  api_keys:\n    default_ttl: 9000h\n",
			want: []string{"credentials.api_keys.default_ttl: 9000h0m0s exceeds credentials.api_keys.max_ttl 8760h0m0s"},
		},
		{
			name: "clock skew above 10m",
			file: "credentials:\n  clock_skew: 11m\n",
			want: []string{"credentials.clock_skew: must be between 0s and 10m0s"},
		},
		{
			name: "macaroon prefix clashing with the key prefix",
			file: "credentials:\n  api_keys:\n    prefix: {current: talos}\n  derived_tokens:\n    macaroon:\n      prefix: {current: talos}\n",
			want: []string{`credentials.derived_tokens.macaroon.prefix.current: "talos" clashes with API key prefix "talos"`},
		},
		{
			name: "prefix too long",
			file: "credentials:\n  api_keys:\n    prefix: {current: abcdefghijklmnopq}\n",
			want: []string{"credentials.api_keys.prefix.current: must match ^[a-zA-Z0-9_]{1,16}$"},
		},
		{
			name: "unknown DSN scheme",
			file: "db:\n  dsn: oracle://scott:tiger@db\n",
			want: []string{`db.dsn: unsupported scheme "oracle"`},
		},
		{
			name: "ports clash",
			file: "serve:\n  grpc: {port: 4420}\n",
			want: []string{"serve.grpc.port: port 4420 is already used by serve.http.port"},
		},
		{
			name: "multitenancy without networks",
			file: "multitenancy: {enabled: true}\n",
			want: []string{"multitenancy.networks: must not be empty when multitenancy.enabled is true"},
		},
		{
			name: "short secret in file",
			file: "secrets:\n  hmac:\n    current: " + short + "\n",
			want: []string{"secrets.hmac.current: must be at least 32 characters, got 16"},
		},
		{
			name: "short retired secret in env",
			env:  []string{"TALOS_SECRETS_HMAC_RETIRED=" + short},
			want: []string{"environment variable TALOS_SECRETS_HMAC_RETIRED: secrets.hmac.retired[0]: must be at least 32 characters"},
		},
		{
			name: "short secret in env",
			env:  []string{"TALOS_SECRETS_HMAC_CURRENT=" + short},
			want: []string{"environment variable TALOS_SECRETS_HMAC_CURRENT: secrets.hmac.current: must be at least 32 characters"},
		},
		{
			name: "bad signing key URL does not echo it",
			file: "credentials:\n  derived_tokens:\n    jwt:\n      signing_keys:\n        urls: [\"https://" + short + "\"]\n",
			want: []string{"credentials.derived_tokens.jwt.signing_keys.urls[0]: must match ^(base64|file)://"},
		},
		{
			name: "secret file passed as config",
			file: short + "\n",
			want: []string{"top level must be a mapping of config keys, got a string"},
		},
		{
			name: "unknown key under a secret key is not echoed",
			file: "secrets:\n  hmac:\n    retired:\n      - {" + short + ": x, value: " + testSecret + "}\n",
			want: []string{"secrets.hmac.retired[0]: unknown keys (names not shown under a secret key)"},
		},
		{
			name: "secret with wrong type",
			file: "cache:\n  redis:\n    password: [" + short + "]\n",
			want: []string{"cache.redis.password: must be string, got array"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tt.file != "" {
				ext := tt.ext
				if ext == "" {
					ext = ".yaml"
				}
				files = []string{writeFile(t, "config"+ext, tt.file)}
			}
			env := tt.env
			if env == nil {
				env = requiredEnv
			}
			_, err := config.Load(files, env)
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), short) {
				t.Errorf("error contains the secret: %q", err)
			}
		})
	}
}

func TestLoad_MissingFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load([]string{filepath.Join(t.TempDir(), "nope.yaml")}, requiredEnv)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing file) = %v, want an error wrapping fs.ErrNotExist", err)
	}
}

func TestLoad_RetiredShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []config.RetiredSecret
	}{
		{
			name: "bare strings",
			yaml: "[" + testSecret + ", " + testSecret2 + "]",
			want: []config.RetiredSecret{{Value: config.NewSecret(testSecret)}, {Value: config.NewSecret(testSecret2)}},
		},
		{
			name: "objects with and without expiry",
			yaml: "[{value: " + testSecret + ", expires_at: \"2026-03-01T10:00:00Z\"}, {value: " + testSecret2 + "}]",
			want: []config.RetiredSecret{
				{Value: config.NewSecret(testSecret), ExpiresAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
				{Value: config.NewSecret(testSecret2)},
			},
		},
		{
			name: "mixed, unquoted YAML timestamp",
			yaml: "[" + testSecret + ", {value: " + testSecret2 + ", expires_at: 2026-03-01T10:00:00.5Z}]",
			want: []config.RetiredSecret{
				{Value: config.NewSecret(testSecret)},
				{Value: config.NewSecret(testSecret2), ExpiresAt: time.Date(2026, 3, 1, 10, 0, 0, 5e8, time.UTC)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := writeFile(t, "c.yaml", "secrets:\n  hmac:\n    retired: "+tt.yaml+"\n")
			got := mustLoad(t, []string{f}, requiredEnv)
			if diff := cmp.Diff(tt.want, got.Secrets.HMAC.Retired); diff != "" {
				t.Errorf("retired mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("issuer_retired", func(t *testing.T) {
		t.Parallel()
		f := writeFile(t, "c.yaml", "credentials:\n  issuer_retired: [a, {value: b, expires_at: \"2026-03-01T10:00:00Z\"}]\n")
		got := mustLoad(t, []string{f}, requiredEnv)
		want := []config.RetiredIssuer{{Value: "a"}, {Value: "b", ExpiresAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}}
		if diff := cmp.Diff(want, got.Credentials.IssuerRetired); diff != "" {
			t.Errorf("issuer_retired mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestRetiredSecret_Active(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		r    config.RetiredSecret
		now  time.Time
		want bool
	}{
		{"no expiry", config.RetiredSecret{}, exp.Add(1000 * time.Hour), true},
		{"before expiry", config.RetiredSecret{ExpiresAt: exp}, exp.Add(-time.Nanosecond), true},
		{"at expiry (exclusive)", config.RetiredSecret{ExpiresAt: exp}, exp, false},
		{"after expiry", config.RetiredSecret{ExpiresAt: exp}, exp.Add(time.Second), false},
	}
	for _, tt := range tests {
		if got := tt.r.Active(tt.now); got != tt.want {
			t.Errorf("%s: Active = %v, want %v", tt.name, got, tt.want)
		}
	}
}
