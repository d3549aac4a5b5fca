package config

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Config is the whole configuration. Its koanf tags are the config keys; the
// environment variable of a key is TALOS_ plus the key path upper-cased with
// '.' replaced by '_' (serve.http.port is TALOS_SERVE_HTTP_PORT).
//
// Fields tagged koanf:"-" are derived by [Config.Validate] and cannot be set
// from files or the environment. A Config built by hand (in tests) must be
// passed through Validate before use, or have its derived fields set directly.
//
// Config contains slices; treat a Config as immutable once loaded and copy a
// slice before changing it.
type Config struct {
	Serve        Serve        `koanf:"serve"`
	Credentials  Credentials  `koanf:"credentials"`
	Secrets      Secrets      `koanf:"secrets"`
	DB           DB           `koanf:"db"`
	Cache        Cache        `koanf:"cache"`
	RateLimit    RateLimit    `koanf:"rate_limit"`
	LastUsed     LastUsed     `koanf:"last_used"`
	Log          Log          `koanf:"log"`
	Tracing      Tracing      `koanf:"tracing"`
	Quota        Quota        `koanf:"quota"`
	Multitenancy Multitenancy `koanf:"multitenancy"`
	Invalidation Invalidation `koanf:"invalidation"`
	Envoy        EnvoyXDS     `koanf:"envoy"`
	// Proxy configures talos proxy, the sidecar; talos serve ignores it.
	Proxy Proxy `koanf:"proxy"`

	// Warnings lists non-fatal findings of Load and Validate (ignored or
	// unknown environment variables, an unknown client_ip_source, ...), one
	// human-readable line each, for the caller to log.
	Warnings []string `koanf:"-"`
}

// Serve holds the listeners.
type Serve struct {
	HTTP        HTTP        `koanf:"http"`
	GRPC        GRPC        `koanf:"grpc"`
	Metrics     Metrics     `koanf:"metrics"`
	Admin       Admin       `koanf:"admin"`
	SelfService SelfService `koanf:"self_service"`
	Limits      Limits      `koanf:"limits"`
	Shutdown    Shutdown    `koanf:"shutdown"`
}

// SelfService is serve.self_service (Talos addition): the public,
// unauthenticated surface.
type SelfService struct {
	RevokeThrottle RevokeThrottle `koanf:"revoke_throttle"`
}

// RevokeThrottle is serve.self_service.revoke_throttle: failed self-revokes
// per client address (IPv6 grouped by /64), GCRA. Burst failures at once, then
// one more per Interval. Each replica counts on its own.
type RevokeThrottle struct {
	Enabled  bool     `koanf:"enabled"`
	Burst    int64    `koanf:"burst"`
	Interval Duration `koanf:"interval"`
	// MaxClients bounds the addresses tracked (memory); when full, the
	// address closest to a full budget is forgotten first.
	MaxClients int `koanf:"max_clients"`
}

// HTTP is serve.http: the HTTP/JSON API listener (default 0.0.0.0:4420).
type HTTP struct {
	Host string `koanf:"host"`
	// Port 0 means "pick a free port" (tests).
	Port int `koanf:"port"`
	// MaxBodyBytes caps request bodies; larger bodies get 413 (Talos addition).
	MaxBodyBytes       int64      `koanf:"max_body_bytes"`
	CORS               CORS       `koanf:"cors"`
	ClientIPSource     string     `koanf:"client_ip_source"`
	TrustForwardedHost bool       `koanf:"trust_forwarded_host"`
	RequestLog         RequestLog `koanf:"request_log"`
	TLS                TLS        `koanf:"tls"`
	// AllowedHosts are the Host header names (ports ignored), besides
	// loopback names and addresses and a specific serve.http.host, that the
	// admin API answers while it has no bearer tokens; other Hosts get 421,
	// so that a DNS-rebinding web page cannot drive it (Talos addition).
	AllowedHosts []string `koanf:"allowed_hosts"`

	// ClientIP is ClientIPSource resolved by Validate. An unknown or
	// unspecified source resolves to IPSourceRemoteAddr (with a warning when
	// unknown), as in Ory Talos.
	ClientIP IPSource `koanf:"-"`
}

// Addr returns host:port for net.Listen.
func (h HTTP) Addr() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// CORS is serve.http.cors.
type CORS struct {
	Enabled          bool     `koanf:"enabled"`
	AllowedOrigins   []string `koanf:"allowed_origins"`
	AllowedMethods   []string `koanf:"allowed_methods"`
	AllowedHeaders   []string `koanf:"allowed_headers"`
	ExposedHeaders   []string `koanf:"exposed_headers"`
	AllowCredentials bool     `koanf:"allow_credentials"`
	// MaxAge is a number of seconds in Ory Talos; a duration string works too.
	MaxAge Duration `koanf:"max_age"`
	Debug  bool     `koanf:"debug"`
}

// RequestLog is serve.http.request_log.
type RequestLog struct {
	ExcludeHealthEndpoints bool `koanf:"exclude_health_endpoints"`
}

// GRPC is serve.grpc: the gRPC listener (Talos addition, default 0.0.0.0:4421).
type GRPC struct {
	Host string `koanf:"host"`
	Port int    `koanf:"port"`
	TLS  TLS    `koanf:"tls"`
	// Reflection is serve.grpc.reflection (Talos addition): serve gRPC
	// server reflection. Nil means on when Host is a loopback address.
	Reflection *bool `koanf:"reflection"`
}

// ReflectionOn reports whether the listener serves gRPC reflection.
func (g GRPC) ReflectionOn() bool { return reflectionOn(g.Reflection, g.Host) }

// reflectionOn is setting when set, else whether host is loopback
// ("localhost", 127.0.0.0/8, ::1): reflection lists every service and
// message of the listener, which is public (the protos are), but worth
// asking for before it is offered to a network.
func reflectionOn(setting *bool, host string) bool {
	if setting != nil {
		return *setting
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Addr returns host:port for net.Listen.
func (g GRPC) Addr() string { return net.JoinHostPort(g.Host, strconv.Itoa(g.Port)) }

// Metrics is serve.metrics: health and Prometheus (default 0.0.0.0:4422).
type Metrics struct {
	Host string `koanf:"host"`
	Port int    `koanf:"port"`
	TLS  TLS    `koanf:"tls"`
}

// Addr returns host:port for net.Listen.
func (m Metrics) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Admin is serve.admin (Talos addition).
type Admin struct {
	Auth AdminAuth `koanf:"auth"`
}

// AdminAuth is serve.admin.auth: who may call the admin API and the sidecar
// protocol, each credential with a role (docs/roles.md). With no credential
// whose role reaches the admin API, the admin API is unauthenticated, as in
// Ory Talos.
type AdminAuth struct {
	// BearerTokens are tokens with roles; a bare string is an admin token.
	BearerTokens []BearerToken `koanf:"bearer_tokens"`
	// SidecarTokens authorize the sidecar protocol only (the Verifier
	// service and the xDS stream), so a sidecar host never holds a token that
	// can issue or revoke keys. Same as bearer tokens with role sidecar.
	SidecarTokens []Secret `koanf:"sidecar_tokens"`
	// Identities grant roles to verified client certificates (a listener
	// with tls.client_auth request or require) by URI SAN, DNS SAN or
	// subject (Talos addition).
	Identities []Identity `koanf:"identities"`
	// TrustXFCC takes the certificate identity from Envoy's
	// x-forwarded-client-cert header when the direct peer is in
	// XFCCAllowFrom (a mesh sidecar that terminated the client's mTLS).
	TrustXFCC     bool     `koanf:"trust_xfcc"`
	XFCCAllowFrom []string `koanf:"xfcc_allow_from"`

	// XFCCFrom is XFCCAllowFrom parsed by Validate (masked, deduplicated).
	XFCCFrom []netip.Prefix `koanf:"-"`
}

// Credentials is the credentials section.
type Credentials struct {
	// Issuer is required; it is the iss of derived tokens.
	Issuer        string          `koanf:"issuer"`
	IssuerRetired []RetiredIssuer `koanf:"issuer_retired"`
	// ClockSkew is the leeway for time checks, at most 10m.
	ClockSkew     Duration      `koanf:"clock_skew"`
	APIKeys       APIKeys       `koanf:"api_keys"`
	ImportedKeys  ImportedKeys  `koanf:"imported_keys"`
	DerivedTokens DerivedTokens `koanf:"derived_tokens"`
}

// APIKeys is credentials.api_keys: issued keys.
type APIKeys struct {
	// Format of newly issued keys (Talos addition); both formats verify.
	Format KeyFormat `koanf:"format"`
	// DefaultTTL applies when an issue request has no TTL; 0 means no expiry.
	DefaultTTL Duration `koanf:"default_ttl"`
	// MaxTTL caps requested TTLs and is also the maximum key age.
	MaxTTL Duration     `koanf:"max_ttl"`
	Prefix APIKeyPrefix `koanf:"prefix"`
}

// APIKeyPrefix is credentials.api_keys.prefix. Retired prefixes still verify.
type APIKeyPrefix struct {
	Current string   `koanf:"current"`
	Retired []string `koanf:"retired"`
	// PublicCurrent is the prefix of PUBLIC keys; without it issuing a public
	// key is refused.
	PublicCurrent string   `koanf:"public_current"`
	PublicRetired []string `koanf:"public_retired"`
}

// ImportedKeys is credentials.imported_keys (Talos addition).
type ImportedKeys struct {
	Hashing ImportHashing `koanf:"hashing"`
	// MinLength (characters) and MinEntropyBits (an estimate, see
	// docs/security.md) are the minimum strength of an imported key, unless
	// AllowWeak accepts any (as Ory Talos does).
	MinLength      int  `koanf:"min_length"`
	MinEntropyBits int  `koanf:"min_entropy_bits"`
	AllowWeak      bool `koanf:"allow_weak"`
}

// DerivedTokens is credentials.derived_tokens.
type DerivedTokens struct {
	DefaultTTL Duration `koanf:"default_ttl"`
	JWT        JWT      `koanf:"jwt"`
	Macaroon   Macaroon `koanf:"macaroon"`
}

// JWT is credentials.derived_tokens.jwt.
type JWT struct {
	SigningKeyID string      `koanf:"signing_key_id"`
	SigningKeys  SigningKeys `koanf:"signing_keys"`
}

// SigningKeys is credentials.derived_tokens.jwt.signing_keys.
type SigningKeys struct {
	// URLs are base64:// URLs of JWK sets. They hold private keys, hence
	// Secret.
	URLs []Secret `koanf:"urls"`
}

// Macaroon is credentials.derived_tokens.macaroon.
type Macaroon struct {
	Prefix MacaroonPrefix `koanf:"prefix"`
}

// MacaroonPrefix is credentials.derived_tokens.macaroon.prefix.
type MacaroonPrefix struct {
	Current string   `koanf:"current"`
	Retired []string `koanf:"retired"`
}

// Secrets is the secrets section.
type Secrets struct {
	HMAC HMAC `koanf:"hmac"`
}

// HMAC is secrets.hmac: the key of issued-key checksums, the macaroon root key
// and the page-token key. Current signs; Current and every unexpired retired
// secret verify.
type HMAC struct {
	Current Secret          `koanf:"current"`
	Retired []RetiredSecret `koanf:"retired"`
}

// DB is the db section.
type DB struct {
	// DSN selects the store by scheme (sqlite://, sqlite3://, postgres://,
	// postgresql://, cockroach://, mysql://). It may carry a password, hence
	// Secret. Only commands that open a database require it (see
	// [Config.RequireDSN]).
	DSN Secret `koanf:"dsn"`
	// AutoMigrate is db.auto_migrate (Talos addition). Nil means "decide by
	// driver"; use [DB.MigrateOnStart].
	AutoMigrate *bool `koanf:"auto_migrate"`
	// ReadReplicaDSN is db.read_replica_dsn (Talos addition): an optional
	// database, of the same driver, that serves the reads of verify traffic.
	ReadReplicaDSN Secret `koanf:"read_replica_dsn"`
}

// Driver returns the store driver named by the DSN scheme, or "" when the DSN
// is empty or its scheme is not supported (Validate rejects the latter).
func (d DB) Driver() Driver { return driverOf(d.DSN.Value()) }

// MigrateOnStart reports whether serve applies pending migrations before
// serving: db.auto_migrate when set, otherwise true for SQLite only.
func (d DB) MigrateOnStart() bool {
	if d.AutoMigrate != nil {
		return *d.AutoMigrate
	}
	return d.Driver() == DriverSQLite
}

// Cache is the cache section.
type Cache struct {
	Type    CacheType `koanf:"type"`
	Enabled bool      `koanf:"enabled"`
	// TTL of cached verification results; 0 disables caching.
	TTL    Duration    `koanf:"ttl"`
	Memory MemoryCache `koanf:"memory"`
	Redis  Redis       `koanf:"redis"`
}

// MemoryCache is cache.memory.
type MemoryCache struct {
	// MaxSize is a byte budget.
	MaxSize     int64 `koanf:"max_size"`
	NumCounters int64 `koanf:"num_counters"`
}

// Redis is cache.redis; rate_limit.backend=redis reuses it, and
// proxy.cache.redis embeds it.
type Redis struct {
	Addrs           []string `koanf:"addrs"`
	Password        Secret   `koanf:"password"`
	DB              int      `koanf:"db"`
	PoolSize        int      `koanf:"pool_size"`
	Timeout         Duration `koanf:"timeout"`
	MinIdleConns    int      `koanf:"min_idle_conns"`
	ConnMaxIdleTime Duration `koanf:"conn_max_idle_time"`
	ConnMaxLifetime Duration `koanf:"conn_max_lifetime"`
	TLS             RedisTLS `koanf:"tls"`
}

// RateLimit is the rate_limit section: enforcement of the keys' rate-limit
// policies on the control plane's public verify API (apiKeys:verify and
// :batchVerify; the sidecar protocol never counts, the sidecar does).
type RateLimit struct {
	// Enabled is checked per request, as in Talos.
	Enabled bool `koanf:"enabled"`
	// Backend memory (per process) or redis (shared; uses cache.redis).
	Backend RateLimitBackend `koanf:"backend"`
	// FailureMode says what a verify does when the limiter fails: open
	// (allow, as Talos) or closed (answer unavailable).
	FailureMode RateLimitFailureMode `koanf:"failure_mode"`
	Memory      RateLimitMemory      `koanf:"memory"`
	Redis       RateLimitRedis       `koanf:"redis"`
}

// RateLimitMemory is rate_limit.memory and proxy.rate_limit.memory.
type RateLimitMemory struct {
	// MaxKeys bounds the keys with limiter state; a key forgotten when the
	// table is full starts again with a full budget.
	MaxKeys int `koanf:"max_keys"`
}

// RateLimitRedis is rate_limit.redis and proxy.rate_limit.redis.
type RateLimitRedis struct {
	// KeyPrefix namespaces the limiter's keys in Redis.
	KeyPrefix string `koanf:"key_prefix"`
}

// RateLimitFailureMode is rate_limit.failure_mode and
// proxy.rate_limit.failure_mode.
type RateLimitFailureMode string

// Rate-limit failure modes.
const (
	// RateLimitFailOpen allows a request the limiter cannot decide on,
	// without the RateLimit header (Talos's behaviour).
	RateLimitFailOpen RateLimitFailureMode = "open"
	// RateLimitFailClosed answers it as unavailable (503), not as limited.
	RateLimitFailClosed RateLimitFailureMode = "closed"
)

// LastUsed is the last_used section: batched last-used-time updates.
type LastUsed struct {
	QueueSize     int      `koanf:"queue_size"`
	FlushSize     int      `koanf:"flush_size"`
	FlushInterval Duration `koanf:"flush_interval"`
	NumWorkers    int      `koanf:"num_workers"`
}

// Log is the log section.
type Log struct {
	Level  LogLevel  `koanf:"level"`
	Format LogFormat `koanf:"format"`
}

// Tracing is the tracing section.
type Tracing struct {
	Enabled        bool    `koanf:"enabled"`
	ServiceName    string  `koanf:"service_name"`
	ServiceVersion string  `koanf:"service_version"`
	Environment    string  `koanf:"environment"`
	Exporter       string  `koanf:"exporter"`
	Endpoint       string  `koanf:"endpoint"`
	SampleRate     float64 `koanf:"sample_rate"`
}

// Quota is the quota section.
type Quota struct {
	// APIKeysMax caps the number of keys; 0 means unlimited.
	APIKeysMax int64 `koanf:"api_keys_max"`
}

// Multitenancy is the multitenancy section.
type Multitenancy struct {
	Enabled  bool      `koanf:"enabled"`
	Networks []Network `koanf:"networks"`
}

// Network maps a request hostname to a tenant (network ID).
type Network struct {
	// Hostname is matched without its port.
	Hostname string `koanf:"hostname"`
	// ID is the tenant UUID.
	ID string `koanf:"id"`
	// ConfigPath is an optional per-tenant config file.
	ConfigPath string `koanf:"config_path"`
}

// KeyFormat is credentials.api_keys.format.
type KeyFormat string

// Key formats.
const (
	KeyFormatV1 KeyFormat = "v1" // Ory Talos's format
	KeyFormatV2 KeyFormat = "v2"
)

// ImportHashing is credentials.imported_keys.hashing.
type ImportHashing string

// Imported-key hashing schemes.
const (
	// ImportHashingSHA512_256 is Ory Talos's unkeyed, tenant-salted hash.
	ImportHashingSHA512_256 ImportHashing = "sha512_256"
	// ImportHashingHMAC keys the hash with secrets.hmac, so a database dump
	// alone cannot be used to guess imported keys offline.
	ImportHashingHMAC ImportHashing = "hmac"
)

// CacheType is cache.type.
type CacheType string

// Cache types.
const (
	CacheTypeNoop   CacheType = "noop"
	CacheTypeMemory CacheType = "memory"
	CacheTypeRedis  CacheType = "redis"
)

// RateLimitBackend is rate_limit.backend.
type RateLimitBackend string

// Rate-limit backends.
const (
	RateLimitBackendMemory RateLimitBackend = "memory"
	RateLimitBackendRedis  RateLimitBackend = "redis"
)

// LogLevel is log.level.
type LogLevel string

// Log levels.
const (
	LogLevelDebug LogLevel = "debug"
	LogLevelInfo  LogLevel = "info"
	LogLevelWarn  LogLevel = "warn"
	LogLevelError LogLevel = "error"
)

// Slog returns the slog level; an unknown level is slog.LevelInfo.
func (l LogLevel) Slog() slog.Level {
	switch l {
	case LogLevelDebug:
		return slog.LevelDebug
	case LogLevelWarn:
		return slog.LevelWarn
	case LogLevelError:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// LogFormat is log.format.
type LogFormat string

// Log formats.
const (
	LogFormatJSON LogFormat = "json"
	LogFormatText LogFormat = "text"
)

// Driver names a store implementation, derived from the db.dsn scheme.
type Driver string

// Drivers.
const (
	DriverSQLite    Driver = "sqlite"
	DriverPostgres  Driver = "postgres"
	DriverMySQL     Driver = "mysql"
	DriverCockroach Driver = "cockroach"
)

// IPSource says where the client IP of a request comes from (the resolved
// serve.http.client_ip_source). The zero value is IPSourceRemoteAddr.
type IPSource int

// Client IP sources, in Ory Talos's order.
const (
	IPSourceRemoteAddr     IPSource = iota // the TCP peer address
	IPSourceCFConnectingIP                 // CF-Connecting-IP
	IPSourceXForwardedFor                  // leftmost X-Forwarded-For entry
	IPSourceXRealIP                        // X-Real-IP
	IPSourceTrueClientIP                   // True-Client-IP
)

// Header returns the request header that carries the client IP, or "" for
// IPSourceRemoteAddr.
func (s IPSource) Header() string {
	switch s {
	case IPSourceCFConnectingIP:
		return "CF-Connecting-IP"
	case IPSourceXForwardedFor:
		return "X-Forwarded-For"
	case IPSourceXRealIP:
		return "X-Real-IP"
	case IPSourceTrueClientIP:
		return "True-Client-IP"
	default:
		return ""
	}
}

// String returns the config name of s (CLIENT_IP_SOURCE_...).
func (s IPSource) String() string {
	switch s {
	case IPSourceCFConnectingIP:
		return "CLIENT_IP_SOURCE_CF_CONNECTING_IP"
	case IPSourceXForwardedFor:
		return "CLIENT_IP_SOURCE_X_FORWARDED_FOR"
	case IPSourceXRealIP:
		return "CLIENT_IP_SOURCE_X_REAL_IP"
	case IPSourceTrueClientIP:
		return "CLIENT_IP_SOURCE_TRUE_CLIENT_IP"
	default:
		return "CLIENT_IP_SOURCE_REMOTE_ADDR"
	}
}

func ipSourceNames() map[string]IPSource {
	return map[string]IPSource{
		"":                                  IPSourceRemoteAddr,
		"CLIENT_IP_SOURCE_UNSPECIFIED":      IPSourceRemoteAddr,
		"CLIENT_IP_SOURCE_REMOTE_ADDR":      IPSourceRemoteAddr,
		"CLIENT_IP_SOURCE_CF_CONNECTING_IP": IPSourceCFConnectingIP,
		"CLIENT_IP_SOURCE_X_FORWARDED_FOR":  IPSourceXForwardedFor,
		"CLIENT_IP_SOURCE_X_REAL_IP":        IPSourceXRealIP,
		"CLIENT_IP_SOURCE_TRUE_CLIENT_IP":   IPSourceTrueClientIP,
	}
}

// Defaults returns the configuration used when nothing is set: Ory Talos's
// schema defaults plus ours. It has no issuer and no HMAC secret, so it does
// not pass Validate on its own. Each call returns fresh slices.
func Defaults() Config {
	return Config{
		Serve: Serve{
			HTTP: HTTP{
				Host:         "0.0.0.0",
				Port:         4420,
				MaxBodyBytes: 1 << 20,
				CORS: CORS{
					AllowedOrigins: []string{"*"},
					AllowedMethods: []string{"GET", "POST", "PUT", "PATCH", "DELETE"},
					AllowedHeaders: []string{"Authorization", "Content-Type"},
					ExposedHeaders: []string{"Content-Type"},
				},
				ClientIPSource: "CLIENT_IP_SOURCE_UNSPECIFIED",
				ClientIP:       IPSourceRemoteAddr,
				TLS:            defaultTLS(),
			},
			GRPC:    GRPC{Host: "0.0.0.0", Port: 4421, TLS: defaultTLS()},
			Metrics: Metrics{Host: "0.0.0.0", Port: 4422, TLS: defaultTLS()},
			SelfService: SelfService{RevokeThrottle: RevokeThrottle{
				Enabled:    true,
				Burst:      10,
				Interval:   Duration(6 * time.Second),
				MaxClients: 100_000,
			}},
			Limits:   defaultLimits(),
			Shutdown: Shutdown{DrainDelay: Duration(5 * time.Second), Timeout: Duration(30 * time.Second)},
		},
		Credentials: Credentials{
			ClockSkew: Duration(5 * time.Minute),
			APIKeys: APIKeys{
				Format: KeyFormatV2,
				MaxTTL: Duration(8760 * time.Hour),
				Prefix: APIKeyPrefix{Current: "ory_ak"},
			},
			ImportedKeys: ImportedKeys{Hashing: ImportHashingSHA512_256, MinLength: 16, MinEntropyBits: 64},
			DerivedTokens: DerivedTokens{
				DefaultTTL: Duration(time.Hour),
				Macaroon:   Macaroon{Prefix: MacaroonPrefix{Current: "mc"}},
			},
		},
		Cache: Cache{
			Type: CacheTypeNoop,
			TTL:  Duration(5 * time.Minute),
			Memory: MemoryCache{
				MaxSize:     100 << 20,
				NumCounters: 10000,
			},
			Redis: defaultRedis(Duration(3 * time.Second)),
		},
		RateLimit: RateLimit{
			Backend:     RateLimitBackendMemory,
			FailureMode: RateLimitFailOpen,
			Memory:      RateLimitMemory{MaxKeys: 1_000_000},
			Redis:       RateLimitRedis{KeyPrefix: "talos:rl:"},
		},
		LastUsed: LastUsed{
			QueueSize:     10000,
			FlushSize:     100,
			FlushInterval: Duration(30 * time.Second),
			NumWorkers:    4,
		},
		Log: Log{Level: LogLevelInfo, Format: LogFormatJSON},
		Tracing: Tracing{
			ServiceName:    "talos",
			ServiceVersion: "0.0.0",
			Environment:    "development",
			Exporter:       "otlp",
			SampleRate:     0.001,
		},
		Invalidation: Invalidation{
			Enabled:           true,
			PollInterval:      Duration(50 * time.Millisecond),
			Retention:         Duration(10 * time.Minute),
			HeartbeatInterval: Duration(time.Second),
		},
		Envoy: EnvoyXDS{
			ListenerPort: 8080,
			App:          "127.0.0.1:8081",
			Sidecar:      "127.0.0.1:9191",
			Timeout:      Duration(250 * time.Millisecond),
		},
		Proxy: Proxy{
			Upstream:        "127.0.0.1:4421",
			UpstreamTimeout: Duration(2 * time.Second),
			CheckTimeout:    Duration(200 * time.Millisecond),
			UpstreamRetries: 2,
			// Loopback: the proxy beside it (Envoy, nginx) dials localhost,
			// and none of these listeners authenticates its caller.
			ExtAuthz:    ProxyListener{Host: "127.0.0.1", Port: 9191, TLS: defaultTLS()},
			HTTP:        ProxyListener{Host: "127.0.0.1", Port: 4430, TLS: defaultTLS()},
			Metrics:     ProxyListener{Host: "127.0.0.1", Port: 4432, TLS: defaultTLS()},
			UpstreamTLS: defaultClientTLS(),
			Cache: ProxyCache{
				TTL:         Duration(time.Minute),
				NegativeTTL: Duration(5 * time.Second),
				Memory:      ProxyMemoryCache{MaxSize: 64 << 20},
				Redis: ProxyRedis{
					// A shared cache must not stall the hot path: a slow
					// Redis is treated as a miss long before the upstream
					// timeout.
					Redis:     defaultRedis(Duration(100 * time.Millisecond)),
					KeyPrefix: "talos:v1:",
				},
			},
			StaleIfError:      Duration(5 * time.Minute),
			Invalidation:      ProxyInvalidation{Enabled: true, MaxStaleness: Duration(30 * time.Second)},
			CredentialHeaders: []string{"authorization", "x-api-key"},
			Headers:           ProxyHeaders{Prefix: "x-talos-"},
			FailureMode:       ProxyFailureModeDeny,
			Limits:            ProxyLimits{Limits: defaultLimits(), MaxMessageBytes: defaultMaxMessage},
			Shutdown:          Shutdown{DrainDelay: Duration(5 * time.Second), Timeout: Duration(10 * time.Second)},
			Readiness:         ProxyReadiness{WaitForUpstream: true},
			RateLimit: ProxyRateLimit{
				Backend:     RateLimitBackendMemory,
				FailureMode: RateLimitFailOpen,
				Fallback:    ProxyRateLimitFallbackMemory,
				Headers:     true,
				Memory:      RateLimitMemory{MaxKeys: 1_000_000},
				Redis:       RateLimitRedis{KeyPrefix: "talos:rl:"},
			},
		},
	}
}

// defaultRedis returns the defaults of a Redis block (cache.redis and
// proxy.cache.redis differ only in the timeout), with a fresh Addrs slice.
func defaultRedis(timeout Duration) Redis {
	return Redis{
		Addrs:           []string{"localhost:6379"},
		PoolSize:        100,
		Timeout:         timeout,
		MinIdleConns:    2,
		ConnMaxIdleTime: Duration(5 * time.Minute),
		ConnMaxLifetime: Duration(30 * time.Minute),
		TLS:             defaultClientTLS(),
	}
}

// defaultTLS is a listener's TLS block when nothing is set: off.
func defaultTLS() TLS { return TLS{ClientAuth: ClientAuthNone, MinVersion: TLSVersion12} }

// defaultClientTLS is an outgoing link's TLS block when nothing is set: off.
func defaultClientTLS() ClientTLS { return ClientTLS{MinVersion: TLSVersion12} }

// Invalidation is the control plane's push of key changes to sidecars: an
// outbox tailer feeding a delta xDS server on the gRPC port.
type Invalidation struct {
	// Enabled serves the xDS stream. Default true.
	Enabled bool `koanf:"enabled"`
	// PollInterval is how often the outbox is read for changes committed by
	// other replicas (this replica's own are read at once). Default 50ms.
	PollInterval Duration `koanf:"poll_interval"`
	// Retention is how long an invalidation stays served; it must exceed
	// every sidecar's proxy.cache.ttl plus proxy.stale_if_error. Default 10m.
	Retention Duration `koanf:"retention"`
	// HeartbeatInterval is how often the stream carries a heartbeat, by
	// which sidecars detect a dead stream. Default 1s.
	HeartbeatInterval Duration `koanf:"heartbeat_interval"`
}
