package config_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/config"
)

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		wantErr string // "" means valid
	}{
		{"defaults plus required keys", func(*config.Config) {}, ""},
		{"port 0 means any free port", func(c *config.Config) {
			c.Serve.HTTP.Port, c.Serve.GRPC.Port, c.Serve.Metrics.Port = 0, 0, 0
		}, ""},
		{"same port on different hosts", func(c *config.Config) {
			c.Serve.HTTP.Host, c.Serve.Metrics.Host = "127.0.0.1", "10.0.0.1"
			c.Serve.Metrics.Port = c.Serve.HTTP.Port
		}, ""},
		{"same port on a wildcard host", func(c *config.Config) {
			c.Serve.HTTP.Host = "127.0.0.1"
			c.Serve.Metrics.Port = c.Serve.HTTP.Port
		}, "serve.metrics.port: port 4420 is already used by serve.http.port"},
		{"port out of range", func(c *config.Config) { c.Serve.GRPC.Port = 65536 }, "serve.grpc.port: must be between 0 and 65535"},
		{"max body bytes", func(c *config.Config) { c.Serve.HTTP.MaxBodyBytes = 0 }, "serve.http.max_body_bytes: must be greater than 0"},
		{"drain delay negative", func(c *config.Config) { c.Serve.Shutdown.DrainDelay = -1 }, "serve.shutdown.drain_delay: must be between 0 and 5m0s"},
		{"shutdown timeout zero", func(c *config.Config) { c.Serve.Shutdown.Timeout = 0 }, "serve.shutdown.timeout: must be greater than 0 and at most 10m0s (got 0s)"},
		{"max connections", func(c *config.Config) { c.Serve.Limits.MaxConnections = 0 }, "serve.limits.max_connections: must be between 1 and 1048576 (got 0)"},
		{"max streams", func(c *config.Config) { c.Serve.Limits.MaxConcurrentStreams = 1 << 21 }, "serve.limits.max_concurrent_streams: must be between 1 and 1048576"},
		{"missing issuer", func(c *config.Config) { c.Credentials.Issuer = "" }, "credentials.issuer is required"},
		{"missing secret", func(c *config.Config) { c.Secrets.HMAC.Current = config.Secret{} }, "secrets.hmac.current is required"},
		{"short secret counts characters", func(c *config.Config) {
			c.Secrets.HMAC.Current = config.NewSecret(strings.Repeat("é", 31))
		}, "secrets.hmac.current: must be at least 32 characters, got 31"},
		{"32 multibyte characters are enough", func(c *config.Config) {
			c.Secrets.HMAC.Current = config.NewSecret(strings.Repeat("é", 32))
		}, ""},
		{"short retired secret", func(c *config.Config) {
			c.Secrets.HMAC.Retired = []config.RetiredSecret{{Value: config.NewSecret(testSecret)}, {Value: config.NewSecret("short")}}
		}, "secrets.hmac.retired[1]: must be at least 32 characters, got 5"},
		{"short bearer token", func(c *config.Config) {
			c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret("tok")}}
		}, "serve.admin.auth.bearer_tokens[0]: must be at least 32 characters"},
		{"a token in both lists", func(c *config.Config) {
			c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret(testSecret + "-admin")}}
			c.Serve.Admin.Auth.SidecarTokens = []config.Secret{config.NewSecret(testSecret + "-side"), config.NewSecret(testSecret + "-admin")}
		}, "serve.admin.auth.sidecar_tokens[1]: must not repeat serve.admin.auth.bearer_tokens[0]"},
		{"empty retired issuer", func(c *config.Config) {
			c.Credentials.IssuerRetired = []config.RetiredIssuer{{}}
		}, "credentials.issuer_retired[0]: must not be empty"},
		{"retired issuer repeated", func(c *config.Config) {
			c.Credentials.IssuerRetired = []config.RetiredIssuer{{Value: "https://old"}, {Value: "https://old"}}
		}, "credentials.issuer_retired[1]: must differ"},
		{"retired issuer is the current one", func(c *config.Config) {
			c.Credentials.IssuerRetired = []config.RetiredIssuer{{Value: c.Credentials.Issuer}}
		}, "credentials.issuer_retired[0]: must differ"},
		{"clock skew at the limit", func(c *config.Config) { c.Credentials.ClockSkew = config.Duration(10 * time.Minute) }, ""},
		{"clock skew above the limit", func(c *config.Config) {
			c.Credentials.ClockSkew = config.Duration(10*time.Minute + 1)
		}, "credentials.clock_skew: must be between 0s and 10m0s"},
		{"negative clock skew", func(c *config.Config) { c.Credentials.ClockSkew = -1 }, "credentials.clock_skew"},
		{"format v1", func(c *config.Config) { c.Credentials.APIKeys.Format = config.KeyFormatV1 }, ""},
		{"unknown format", func(c *config.Config) { c.Credentials.APIKeys.Format = "v3" }, `credentials.api_keys.format: must be v1 or v2 (got "v3")`},
		{"hmac import hashing", func(c *config.Config) { c.Credentials.ImportedKeys.Hashing = config.ImportHashingHMAC }, ""},
		{"unknown import hashing", func(c *config.Config) { c.Credentials.ImportedKeys.Hashing = "md5" }, "credentials.imported_keys.hashing"},
		{"no import minimum length", func(c *config.Config) { c.Credentials.ImportedKeys.MinLength = 0 }, "credentials.imported_keys.min_length"},
		{"no import minimum entropy", func(c *config.Config) { c.Credentials.ImportedKeys.MinEntropyBits = 0 }, "credentials.imported_keys.min_entropy_bits"},
		{"weak imports allowed", func(c *config.Config) { c.Credentials.ImportedKeys.AllowWeak = true }, ""},
		{"revoke throttle burst 0", func(c *config.Config) { c.Serve.SelfService.RevokeThrottle.Burst = 0 }, "serve.self_service.revoke_throttle.burst"},
		{"revoke throttle interval 0", func(c *config.Config) { c.Serve.SelfService.RevokeThrottle.Interval = 0 }, "serve.self_service.revoke_throttle.interval"},
		{"revoke throttle no clients", func(c *config.Config) { c.Serve.SelfService.RevokeThrottle.MaxClients = 0 }, "serve.self_service.revoke_throttle.max_clients"},
		{"revoke throttle off ignores its values", func(c *config.Config) {
			c.Serve.SelfService.RevokeThrottle = config.RevokeThrottle{Enabled: false}
		}, ""},
		{"zero max ttl", func(c *config.Config) { c.Credentials.APIKeys.MaxTTL = 0 }, "credentials.api_keys.max_ttl: must be greater than 0"},
		{"zero derived ttl", func(c *config.Config) { c.Credentials.DerivedTokens.DefaultTTL = 0 }, "credentials.derived_tokens.default_ttl: must be greater than 0"},
		{"bad key prefix", func(c *config.Config) { c.Credentials.APIKeys.Prefix.Current = "ory-ak" }, "credentials.api_keys.prefix.current: must be 1 to 16"},
		{"empty key prefix", func(c *config.Config) { c.Credentials.APIKeys.Prefix.Current = "" }, "credentials.api_keys.prefix.current"},
		{"bad retired prefix", func(c *config.Config) { c.Credentials.APIKeys.Prefix.Retired = []string{"ok", "not ok"} }, "credentials.api_keys.prefix.retired[1]"},
		{"bad public prefix", func(c *config.Config) { c.Credentials.APIKeys.Prefix.PublicCurrent = "x.y" }, "credentials.api_keys.prefix.public_current"},
		{"macaroon prefix of 9", func(c *config.Config) {
			c.Credentials.DerivedTokens.Macaroon.Prefix.Current = "abcdefghi"
		}, "credentials.derived_tokens.macaroon.prefix.current: must be 1 to 8"},
		{"retired macaroon prefix clashes with a public prefix", func(c *config.Config) {
			c.Credentials.APIKeys.Prefix.PublicCurrent = "mc_v1_x"
		}, `credentials.derived_tokens.macaroon.prefix.current: "mc" clashes with API key prefix "mc_v1_x"`},
		{"prefix sharing a start is fine", func(c *config.Config) { c.Credentials.APIKeys.Prefix.Current = "mc_ak" }, ""},
		{"signing key URL", func(c *config.Config) {
			c.Credentials.DerivedTokens.JWT.SigningKeys.URLs = []config.Secret{config.NewSecret("https://keys.example/k.json")}
		}, "credentials.derived_tokens.jwt.signing_keys.urls[0]: must start with base64:// or file://"},
		{"sqlite DSN", func(c *config.Config) { c.DB.DSN = config.NewSecret("sqlite://./t.db") }, ""},
		{"DSN without scheme", func(c *config.Config) { c.DB.DSN = config.NewSecret("./t.db") }, "db.dsn: must start with a scheme"},
		{"weird DSN scheme is not echoed", func(c *config.Config) {
			c.DB.DSN = config.NewSecret("user:p@ss word://x")
		}, "db.dsn: unsupported scheme: want"},
		{"unknown cache type", func(c *config.Config) { c.Cache.Type = "disk" }, "cache.type"},
		{"redis without addresses", func(c *config.Config) {
			c.RateLimit.Backend = config.RateLimitBackendRedis
			c.Cache.Redis.Addrs = nil
		}, "cache.redis.addrs: must not be empty"},
		{"unknown log level", func(c *config.Config) { c.Log.Level = "trace" }, "log.level"},
		{"unknown log format", func(c *config.Config) { c.Log.Format = "xml" }, "log.format"},
		{"sample rate", func(c *config.Config) { c.Tracing.SampleRate = 1.5 }, "tracing.sample_rate"},
		{"flush interval", func(c *config.Config) { c.LastUsed.FlushInterval = 0 }, "last_used.flush_interval"},
		{"duplicate tenant hostnames", func(c *config.Config) {
			c.Multitenancy.Networks = []config.Network{{Hostname: "a.example", ID: "1"}, {Hostname: "A.example", ID: "2"}}
		}, `multitenancy.networks[1].hostname: "A.example" is already used by multitenancy.networks[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := withRequired()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "p@ss") {
				t.Errorf("error contains the DSN: %v", err)
			}
		})
	}
}

func TestConfig_Validate_ClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		source      string
		want        config.IPSource
		wantHeader  string
		wantWarning bool
	}{
		{"", config.IPSourceRemoteAddr, "", false},
		{"CLIENT_IP_SOURCE_UNSPECIFIED", config.IPSourceRemoteAddr, "", false},
		{"CLIENT_IP_SOURCE_REMOTE_ADDR", config.IPSourceRemoteAddr, "", false},
		{"CLIENT_IP_SOURCE_CF_CONNECTING_IP", config.IPSourceCFConnectingIP, "CF-Connecting-IP", false},
		{"CLIENT_IP_SOURCE_X_FORWARDED_FOR", config.IPSourceXForwardedFor, "X-Forwarded-For", false},
		{"CLIENT_IP_SOURCE_X_REAL_IP", config.IPSourceXRealIP, "X-Real-IP", false},
		{"CLIENT_IP_SOURCE_TRUE_CLIENT_IP", config.IPSourceTrueClientIP, "True-Client-IP", false},
		{"x_forwarded_for", config.IPSourceRemoteAddr, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			t.Parallel()
			c := withRequired()
			c.Serve.HTTP.ClientIPSource = tt.source
			c.Serve.HTTP.ClientIP = config.IPSourceTrueClientIP // must be overwritten
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.Serve.HTTP.ClientIP != tt.want || c.Serve.HTTP.ClientIP.Header() != tt.wantHeader {
				t.Errorf("ClientIP = %v (header %q), want %v (%q)", c.Serve.HTTP.ClientIP, c.Serve.HTTP.ClientIP.Header(), tt.want, tt.wantHeader)
			}
			if got := len(c.Warnings) == 1; got != tt.wantWarning {
				t.Errorf("Warnings = %q, want a warning: %v", c.Warnings, tt.wantWarning)
			}
			if err := c.Validate(); err != nil || len(c.Warnings) > 1 {
				t.Errorf("second Validate: err %v, Warnings %q; want idempotent", err, c.Warnings)
			}
		})
	}
}

func TestConfig_RequireDSN(t *testing.T) {
	t.Parallel()
	c := withRequired()
	if err := c.RequireDSN(); err == nil || !strings.Contains(err.Error(), "db.dsn is required") {
		t.Errorf("RequireDSN() without DSN = %v, want db.dsn is required", err)
	}
	c.DB.DSN = config.NewSecret("sqlite://x.db")
	if err := c.RequireDSN(); err != nil {
		t.Errorf("RequireDSN() = %v, want nil", err)
	}
}

func TestDB_MigrateOnStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dsn         string
		autoMigrate *bool
		wantDriver  config.Driver
		want        bool
	}{
		{"sqlite://./t.db", nil, config.DriverSQLite, true},
		{"sqlite3://./t.db", nil, config.DriverSQLite, true},
		{"SQLITE://./t.db", ptr(false), config.DriverSQLite, false},
		{"postgres://u@h/db", nil, config.DriverPostgres, false},
		{"postgresql://u@h/db", ptr(true), config.DriverPostgres, true},
		{"mysql://u@h/db", nil, config.DriverMySQL, false},
		{"cockroach://u@h/db", nil, config.DriverCockroach, false},
		{"", nil, "", false},
	}
	for _, tt := range tests {
		db := config.DB{DSN: config.NewSecret(tt.dsn), AutoMigrate: tt.autoMigrate}
		if db.Driver() != tt.wantDriver || db.MigrateOnStart() != tt.want {
			t.Errorf("%q auto_migrate=%v: Driver() = %q, MigrateOnStart() = %v; want %q, %v",
				tt.dsn, tt.autoMigrate, db.Driver(), db.MigrateOnStart(), tt.wantDriver, tt.want)
		}
	}
}

func TestConfig_Unsupported(t *testing.T) {
	t.Parallel()
	c := withRequired()
	c.Cache.Type = config.CacheTypeRedis
	c.Cache.Redis.Password = config.NewSecret("redis-secret")
	c.RateLimit.Enabled = true
	c.Multitenancy.Enabled = true
	c.Tracing.Enabled = true
	c.Serve.HTTP.CORS.AllowedOrigins = []string{"https://x.example"}
	c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret(testSecret)}}
	c.Quota.APIKeysMax = 10
	c.LastUsed.NumWorkers = 2
	c.Serve.HTTP.Port = 1234                                  // supported
	c.Credentials.APIKeys.MaxTTL = config.Duration(time.Hour) // supported
	want := []string{
		"serve.http.cors.allowed_origins: CORS is not implemented yet; no CORS headers are sent",
		"cache.type=redis: caching is not implemented in the control plane yet",
		"cache.redis.password: caching is not implemented in the control plane yet",
		"last_used.num_workers=2: one writer flushes last-used times; num_workers has no effect",
		"tracing.enabled=true: tracing is not implemented yet",
		"quota.api_keys_max=10: quotas are not enforced yet",
		"multitenancy.enabled=true: multi-tenancy is not implemented yet; every request belongs to the default tenant",
	}
	if diff := cmp.Diff(want, c.Unsupported()); diff != "" {
		t.Errorf("Unsupported() mismatch (-want +got):\n%s", diff)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"90s", 90 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"8760h", 8760 * time.Hour, false},
		{"0", 0, false},
		{"30", 30 * time.Second, false},
		{"1.5", 1500 * time.Millisecond, false},
		{"-5s", 0, true},
		{"1d", 0, true},
		{"", 0, true},
		{"1e3", 0, true},
		{"NaN", 0, true},
		{"99999999999999", 0, true},
	}
	for _, tt := range tests {
		var d config.Duration
		err := d.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.wantErr || d.D() != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v, error %v", tt.in, d, err, tt.want, tt.wantErr)
		}
	}
	if got := config.Duration(8760 * time.Hour).String(); got != "8760h0m0s" {
		t.Errorf("String() = %q", got)
	}
}

func TestLogLevel_Slog(t *testing.T) {
	t.Parallel()
	for level, want := range map[config.LogLevel]slog.Level{
		config.LogLevelDebug: slog.LevelDebug,
		config.LogLevelInfo:  slog.LevelInfo,
		config.LogLevelWarn:  slog.LevelWarn,
		config.LogLevelError: slog.LevelError,
	} {
		if got := level.Slog(); got != want {
			t.Errorf("%s.Slog() = %v, want %v", level, got, want)
		}
	}
}
