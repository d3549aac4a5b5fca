package config

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Proxy is the proxy section: the configuration of talos proxy, the sidecar
// that answers Envoy ext_authz checks from a local cache and asks the control
// plane (Upstream) on a miss. talos serve ignores it; talos proxy loads with
// [LoadProxy] and needs no other section but log.
type Proxy struct {
	// Upstream is the control plane's gRPC address (host:port).
	Upstream string `koanf:"upstream"`
	// UpstreamToken is the bearer token sent to the control plane when its
	// admin auth is on (one of its serve.admin.auth.bearer_tokens).
	UpstreamToken Secret `koanf:"upstream_token"`
	// UpstreamTLS secures the one connection to the control plane (the
	// Verifier calls and the invalidation stream) with TLS or mTLS.
	UpstreamTLS ClientTLS `koanf:"upstream_tls"`
	// UpstreamTimeout bounds one upstream attempt; it is always > 0.
	UpstreamTimeout Duration `koanf:"upstream_timeout"`
	// CheckTimeout is the time budget of one check: once it has passed, a
	// check still waiting for the upstream is answered from a usable stale
	// cache entry (as stale-if-error would), and the upstream call goes on
	// in the background. Always > 0; keep it under the time the proxy in
	// front gives a check (Envoy's ext_authz timeout, 250ms by default).
	CheckTimeout Duration `koanf:"check_timeout"`
	// UpstreamRetries is how many times an UNAVAILABLE call is retried (with
	// backoff), 0 to MaxProxyUpstreamRetries.
	UpstreamRetries int `koanf:"upstream_retries"`
	// Tenant is the tenant (UUID) of checks whose route names none; "" means
	// the default network.
	Tenant string `koanf:"tenant"`
	// HTTPPathPrefix is the path prefix under which HTTP-mode checks arrive
	// (Envoy's http_service path_prefix); "" = every path outside
	// /v2alpha1/ and /health/ is a check. Checked by extauthz.Options.
	HTTPPathPrefix string `koanf:"http_path_prefix"`
	// ExtAuthz is the Envoy ext_authz gRPC listener.
	ExtAuthz ProxyListener `koanf:"extauthz"`
	// HTTP is the HTTP authorization listener (Envoy http_service, nginx
	// auth_request, forward-auth).
	HTTP ProxyListener `koanf:"http"`
	// Metrics is the health and Prometheus listener.
	Metrics ProxyListener `koanf:"metrics"`
	Cache   ProxyCache    `koanf:"cache"`
	// StaleIfError is how long past its TTL a cached allow may still be served
	// while the upstream is down; 0 disables serving stale verdicts.
	StaleIfError Duration `koanf:"stale_if_error"`
	// Invalidation is the subscription to the control plane's pushed key
	// changes.
	Invalidation ProxyInvalidation `koanf:"invalidation"`
	// CredentialHeaders are the lowercase header names read for a credential,
	// in order; never empty.
	CredentialHeaders []string `koanf:"credential_headers"`
	// ClientIPHeaders are the lowercase forwarded headers trusted for the
	// client IP, in order. Empty means the peer (Envoy source) address.
	ClientIPHeaders []string     `koanf:"client_ip_headers"`
	Headers         ProxyHeaders `koanf:"headers"`
	// FailureMode says how a check that cannot be decided is answered.
	FailureMode ProxyFailureMode `koanf:"failure_mode"`
	Limits      ProxyLimits      `koanf:"limits"`
	// Shutdown is the drain on SIGTERM (see [Shutdown]).
	Shutdown  Shutdown       `koanf:"shutdown"`
	Readiness ProxyReadiness `koanf:"readiness"`
	// RateLimit enforces the keys' rate-limit policies on every allowed
	// check, cache hits included.
	RateLimit ProxyRateLimit `koanf:"rate_limit"`
}

// ProxyRateLimit is proxy.rate_limit.
type ProxyRateLimit struct {
	// Enabled counts every allowed check against its key's policy.
	// Default false (policies are then ignored by the sidecar).
	Enabled bool `koanf:"enabled"`
	// Backend memory (per sidecar: N sidecars allow N x quota) or redis
	// (shared by the sidecars of one Redis; uses proxy.cache.redis).
	Backend RateLimitBackend `koanf:"backend"`
	// FailureMode applies when the limiter cannot decide (Redis down and no
	// fallback): open allows without the RateLimit header, closed answers 503.
	FailureMode RateLimitFailureMode `koanf:"failure_mode"`
	// Fallback memory keeps limiting per sidecar while Redis is down;
	// none leaves the decision to FailureMode.
	Fallback ProxyRateLimitFallback `koanf:"fallback"`
	// Headers adds RateLimit-Policy and RateLimit to allows (and RateLimit
	// to 429s). Default true.
	Headers bool `koanf:"headers"`
	// CostHeader, when set, is a request header (lowercase) whose value is
	// the cost of an HTTP-mode check; the proxy in front must set it itself
	// (overwriting what the client sent). "" (default): every HTTP-mode check
	// costs 1. ext_authz checks take the cost from the route's context
	// extension talos.cost.
	CostHeader string          `koanf:"cost_header"`
	Memory     RateLimitMemory `koanf:"memory"`
	Redis      RateLimitRedis  `koanf:"redis"`
}

// ProxyRateLimitFallback is proxy.rate_limit.fallback.
type ProxyRateLimitFallback string

// Rate-limit fallbacks.
const (
	ProxyRateLimitFallbackMemory ProxyRateLimitFallback = "memory"
	ProxyRateLimitFallbackNone   ProxyRateLimitFallback = "none"
)

// ProxyInvalidation is proxy.invalidation.
type ProxyInvalidation struct {
	// Enabled subscribes to the control plane's invalidation stream (xDS).
	// Default true. Without it a revoked key passes until its cache entry
	// expires.
	Enabled bool `koanf:"enabled"`
	// MaxStaleness is how long the stream may be silent (heartbeats
	// included) before the proxy stops answering from its caches and asks
	// the control plane for every check, until the stream is back. It also
	// bounds stale-if-error. Default 30s.
	MaxStaleness Duration `koanf:"max_staleness"`
}

// ProxyListener is one listener of the proxy (proxy.extauthz, proxy.http,
// proxy.metrics). Port 0 means "pick a free port" (tests).
type ProxyListener struct {
	Host string `koanf:"host"`
	Port int    `koanf:"port"`
	TLS  TLS    `koanf:"tls"`
	// Reflection is proxy.extauthz.reflection (the schema allows it on that
	// listener only): serve gRPC server reflection. Nil means on when Host
	// is a loopback address.
	Reflection *bool `koanf:"reflection"`
}

// ReflectionOn reports whether the (gRPC) listener serves reflection.
func (l ProxyListener) ReflectionOn() bool { return reflectionOn(l.Reflection, l.Host) }

// Addr returns host:port for net.Listen.
func (l ProxyListener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// ProxyCache is proxy.cache: the verdict cache, an in-process L1 and an
// optional shared Redis L2.
type ProxyCache struct {
	// TTL of a cached verdict on a valid key, capped by the key's expiry;
	// always > 0.
	TTL Duration `koanf:"ttl"`
	// NegativeTTL of a cached NOT_FOUND; 0 disables negative caching.
	NegativeTTL Duration         `koanf:"negative_ttl"`
	Memory      ProxyMemoryCache `koanf:"memory"`
	Redis       ProxyRedis       `koanf:"redis"`
}

// ProxyMemoryCache is proxy.cache.memory.
type ProxyMemoryCache struct {
	// MaxSize is the byte budget of the in-process cache, at least
	// MinProxyMemoryCacheSize.
	MaxSize int64 `koanf:"max_size"`
}

// ProxyRedis is proxy.cache.redis: the same keys as cache.redis (with a
// shorter default timeout) plus enabled and key_prefix. The embedded Redis
// can be handed to the Redis cache backend as it is.
type ProxyRedis struct {
	Enabled bool `koanf:"enabled"`
	Redis   `koanf:",squash"`
	// KeyPrefix namespaces Talos's keys in a shared Redis.
	KeyPrefix string `koanf:"key_prefix"`
	// Secret is shared by the sidecars of one Redis (and by nobody else; it
	// is not the HMAC secret): Redis keys are keyed hashes under it and
	// entries are encrypted and authenticated with it, so that Redis holds
	// nothing that tests a guessed credential and accepts nothing written
	// without it. Required, at least MinSecretLength characters, when
	// Enabled.
	Secret Secret `koanf:"secret"`
}

// ProxyHeaders is proxy.headers: what the proxy adds to, or removes from, an
// allowed request.
type ProxyHeaders struct {
	// Prefix of the headers the proxy adds; lowercase, ends with '-'.
	Prefix string `koanf:"prefix"`
	// Metadata lists the key metadata fields copied to the header
	// {Prefix}meta-{field}. Header names are case-insensitive, so two fields
	// that differ only in case are rejected.
	Metadata []string `koanf:"metadata"`
	// RemoveCredential strips the credential header from an allowed request
	// before it reaches the upstream service.
	RemoveCredential bool `koanf:"remove_credential"`
}

// ProxyFailureMode is proxy.failure_mode.
type ProxyFailureMode string

// Proxy failure modes.
const (
	// ProxyFailureModeDeny answers a check it cannot decide (upstream down
	// and nothing cached) with an in-band 503 deny: the proxy fails closed.
	ProxyFailureModeDeny ProxyFailureMode = "deny"
	// ProxyFailureModeUnavailable answers such a check with gRPC UNAVAILABLE
	// (HTTP 503 on the HTTP listener), so that Envoy's failure_mode_allow
	// decides whether the request goes through.
	ProxyFailureModeUnavailable ProxyFailureMode = "unavailable"
)

// Bounds of proxy keys beyond what their types allow.
const (
	MaxProxyUpstreamRetries = 10
	MinProxyMemoryCacheSize = 1 << 20
	MaxProxyRedisKeyPrefix  = 64
)

var (
	// headerNameRE is a lowercase RFC 9110 token: HTTP/2 and HTTP/3 carry
	// header names in lowercase, and Envoy matches them that way.
	headerNameRE     = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]+$")
	headerPrefixRE   = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]*-$")
	metadataFieldRE  = regexp.MustCompile("^[a-zA-Z0-9!#$%&'*+.^_`|~-]+$")
	tenantRE         = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	redisKeyPrefixRE = regexp.MustCompile(`^\S+$`)
)

// ValidateProxy checks what talos proxy needs: the proxy and log sections.
// Other sections are not checked (a proxy-only configuration has no issuer
// and no HMAC secret, and should not have one), so a Config accepted only by
// ValidateProxy must not be used to serve the control plane.
// [Config.Validate] does not call it: talos serve ignores the proxy section,
// beyond the schema check every file and the environment get. A caller that
// changes the proxy section after loading (a flag override) should call it
// again.
//
// The error joins one error per problem, each starting with the key path. No
// error contains the value of a secret.
func (c Config) ValidateProxy() error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf(path+": "+format, args...))
	}
	checkProxy(c.Proxy, fail)
	if r := c.Proxy.Cache.Redis; r.Enabled && !r.Secret.IsZero() &&
		subtle.ConstantTimeCompare([]byte(r.Secret.Value()), []byte(c.Secrets.HMAC.Current.Value())) == 1 {
		// The sidecars must never hold what verifies keys.
		fail("proxy.cache.redis.secret", "must not be the HMAC secret (secrets.hmac.current): give the sidecars a secret of their own")
	}
	if rl := c.Proxy.RateLimit; rl.Enabled && rl.Backend == RateLimitBackendRedis && !c.Proxy.Cache.Redis.Enabled {
		fail("proxy.rate_limit.backend", "redis needs proxy.cache.redis.enabled (the limiter uses that Redis)")
	}
	checkLog(c.Log, fail)
	return errors.Join(errs...)
}

func checkProxy(p Proxy, fail func(path, format string, args ...any)) {
	if !validHostPort(p.Upstream) {
		fail("proxy.upstream", "must be host:port with a port from 1 to 65535 (got %q)", p.Upstream)
	}
	if t := p.UpstreamToken.Value(); t != "" {
		if n := utf8.RuneCountInString(t); n < MinSecretLength {
			fail("proxy.upstream_token", "must be at least %d characters, got %d", MinSecretLength, n)
		}
	}
	if p.UpstreamRetries < 0 || p.UpstreamRetries > MaxProxyUpstreamRetries {
		fail("proxy.upstream_retries", "must be between 0 and %d (got %d)", MaxProxyUpstreamRetries, p.UpstreamRetries)
	}
	if p.Tenant != "" && !tenantRE.MatchString(p.Tenant) {
		fail("proxy.tenant", "must be empty or a tenant UUID (got %q)", p.Tenant)
	}
	checkClientTLS("proxy.upstream_tls", p.UpstreamTLS, fail)
	checkTLS("proxy.extauthz.tls", p.ExtAuthz.TLS, fail)
	checkTLS("proxy.http.tls", p.HTTP.TLS, fail)
	checkTLS("proxy.metrics.tls", p.Metrics.TLS, fail)
	checkClientTLS("proxy.cache.redis.tls", p.Cache.Redis.TLS, fail)
	checkPorts([]listener{
		{"proxy.extauthz.port", p.ExtAuthz.Host, p.ExtAuthz.Port},
		{"proxy.http.port", p.HTTP.Host, p.HTTP.Port},
		{"proxy.metrics.port", p.Metrics.Host, p.Metrics.Port},
	}, fail)

	for _, d := range []struct {
		path     string
		v        Duration
		positive bool
	}{
		{"proxy.upstream_timeout", p.UpstreamTimeout, true},
		{"proxy.check_timeout", p.CheckTimeout, true},
		{"proxy.cache.ttl", p.Cache.TTL, true},
		{"proxy.cache.negative_ttl", p.Cache.NegativeTTL, false},
		{"proxy.stale_if_error", p.StaleIfError, false},
		{"proxy.invalidation.max_staleness", p.Invalidation.MaxStaleness, p.Invalidation.Enabled},
		{"proxy.cache.redis.timeout", p.Cache.Redis.Timeout, p.Cache.Redis.Enabled},
		{"proxy.cache.redis.conn_max_idle_time", p.Cache.Redis.ConnMaxIdleTime, false},
		{"proxy.cache.redis.conn_max_lifetime", p.Cache.Redis.ConnMaxLifetime, false},
	} {
		switch {
		case d.v < 0:
			fail(d.path, "must not be negative")
		case d.positive && d.v == 0:
			fail(d.path, "must be greater than 0")
		}
	}

	if p.Cache.Memory.MaxSize < MinProxyMemoryCacheSize {
		fail("proxy.cache.memory.max_size", "must be at least %d bytes (1 MiB), got %d", MinProxyMemoryCacheSize, p.Cache.Memory.MaxSize)
	}
	if r := p.Cache.Redis; r.Enabled {
		if len(r.Addrs) == 0 {
			fail("proxy.cache.redis.addrs", "must not be empty when proxy.cache.redis.enabled is true")
		}
		for i, a := range r.Addrs {
			if !validHostPort(a) {
				fail(fmt.Sprintf("proxy.cache.redis.addrs[%d]", i), "must be host:port with a port from 1 to 65535 (got %q)", a)
			}
		}
		if r.PoolSize < 1 {
			fail("proxy.cache.redis.pool_size", "must be greater than 0")
		}
		if len(r.KeyPrefix) > MaxProxyRedisKeyPrefix || !redisKeyPrefixRE.MatchString(r.KeyPrefix) {
			fail("proxy.cache.redis.key_prefix", "must be 1 to %d characters without spaces (got %q)", MaxProxyRedisKeyPrefix, r.KeyPrefix)
		}
		switch n := utf8.RuneCountInString(r.Secret.Value()); {
		case n == 0:
			fail("proxy.cache.redis.secret", "must be set when proxy.cache.redis.enabled is true: the sidecars sharing a Redis must share a secret of at least %d characters (not the HMAC secret), or anyone who can write to that Redis can plant allows", MinSecretLength)
		case n < MinSecretLength:
			fail("proxy.cache.redis.secret", "must be at least %d characters, got %d", MinSecretLength, n)
		}
	}

	if len(p.CredentialHeaders) == 0 {
		fail("proxy.credential_headers", "must not be empty: the proxy would find no credential")
	}
	checkHeaderNames("proxy.credential_headers", p.CredentialHeaders, fail)
	checkHeaderNames("proxy.client_ip_headers", p.ClientIPHeaders, fail)
	if !headerPrefixRE.MatchString(p.Headers.Prefix) {
		fail("proxy.headers.prefix", "must be a lowercase header name ending with '-' (got %q)", p.Headers.Prefix)
	}
	seen := map[string]int{}
	for i, m := range p.Headers.Metadata {
		path := fmt.Sprintf("proxy.headers.metadata[%d]", i)
		if !metadataFieldRE.MatchString(m) {
			fail(path, "must be a metadata field usable in a header name: letters, digits and !#$%%&'*+-.^_`|~ (got %q)", m)
			continue
		}
		if j, dup := seen[strings.ToLower(m)]; dup {
			fail(path, "%q names the same header as proxy.headers.metadata[%d]", m, j)
		}
		seen[strings.ToLower(m)] = i
	}

	if f := p.FailureMode; f != ProxyFailureModeDeny && f != ProxyFailureModeUnavailable {
		fail("proxy.failure_mode", "must be deny or unavailable (got %q)", f)
	}
	checkProxyLimits(p.Limits, fail)
	checkShutdown("proxy.shutdown", p.Shutdown, fail)
}

// checkHeaderNames checks a list of lowercase header names without
// duplicates.
func checkHeaderNames(path string, names []string, fail func(path, format string, args ...any)) {
	seen := map[string]int{}
	for i, h := range names {
		at := fmt.Sprintf("%s[%d]", path, i)
		if !headerNameRE.MatchString(h) {
			fail(at, "must be a lowercase HTTP header name (got %q)", h)
			continue
		}
		if j, dup := seen[h]; dup {
			fail(at, "%q is already listed at %s[%d]", h, path, j)
		}
		seen[h] = i
	}
}

// validHostPort reports whether s is host:port with a non-empty host (no
// scheme or path) and a port from 1 to 65535: an address to dial.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/ \t\r\n") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// ValidTenant reports whether s is a tenant UUID as proxy.tenant accepts
// it (the sidecar injector checks the talos.dev/tenant annotation with it,
// so it never starts a sidecar that refuses its tenant).
func ValidTenant(s string) bool { return tenantRE.MatchString(s) }
