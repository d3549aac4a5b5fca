package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// MinSecretLength is the minimum length, in characters, of HMAC secrets and
// admin bearer tokens (Ory Talos's schema uses the same bound).
const MinSecretLength = 32

// MaxClockSkew bounds credentials.clock_skew.
const MaxClockSkew = 10 * time.Minute

var (
	keyPrefixRE      = regexp.MustCompile(`^[a-zA-Z0-9_]{1,16}$`)
	macaroonPrefixRE = regexp.MustCompile(`^[a-zA-Z0-9_]{1,8}$`)
	schemeRE         = regexp.MustCompile(`^[a-z][a-z0-9+.-]{0,19}$`)
)

// Validate checks the rules that span keys or that the schema cannot express,
// fills the derived fields (HTTP.ClientIP) and adds non-fatal findings to
// Warnings. Load calls it; call it on a Config built by hand. It is
// idempotent.
//
// Validate is for talos serve and the commands that share its configuration:
// it requires credentials.issuer and secrets.hmac.current and does not check
// the proxy section beyond the schema (see [Config.ValidateProxy]).
//
// The error joins one error per problem, each starting with the key path. No
// error contains the value of a secret.
func (c *Config) Validate() error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf(path+": "+format, args...))
	}

	// Serve.
	checkPorts([]listener{
		{"serve.http.port", c.Serve.HTTP.Host, c.Serve.HTTP.Port},
		{"serve.grpc.port", c.Serve.GRPC.Host, c.Serve.GRPC.Port},
		{"serve.metrics.port", c.Serve.Metrics.Host, c.Serve.Metrics.Port},
	}, fail)
	if c.Serve.HTTP.MaxBodyBytes <= 0 {
		fail("serve.http.max_body_bytes", "must be greater than 0")
	}
	checkLimits("serve.limits", c.Serve.Limits, fail)
	checkShutdown("serve.shutdown", c.Serve.Shutdown, fail)
	src, ok := ipSourceNames()[c.Serve.HTTP.ClientIPSource]
	if !ok {
		c.warn(fmt.Sprintf("serve.http.client_ip_source: unknown value %q; using the remote address", c.Serve.HTTP.ClientIPSource))
	}
	c.Serve.HTTP.ClientIP = src
	checkTLS("serve.http.tls", c.Serve.HTTP.TLS, fail)
	checkTLS("serve.grpc.tls", c.Serve.GRPC.TLS, fail)
	checkTLS("serve.metrics.tls", c.Serve.Metrics.TLS, fail)
	checkClientTLS("cache.redis.tls", c.Cache.Redis.TLS, fail)
	checkAdminAuth(&c.Serve.Admin.Auth, fail)
	if aa := c.Serve.Admin.Auth; len(aa.Identities) > 0 && !aa.TrustXFCC &&
		!c.Serve.HTTP.TLS.ClientAuth.VerifiesClients() && !c.Serve.GRPC.TLS.ClientAuth.VerifiesClients() {
		c.warn("serve.admin.auth.identities: no listener verifies client certificates (serve.http.tls and serve.grpc.tls client_auth are none) and trust_xfcc is off, so no identity can match")
	}

	if rt := c.Serve.SelfService.RevokeThrottle; rt.Enabled {
		if rt.Burst < 1 {
			fail("serve.self_service.revoke_throttle.burst", "must be at least 1 (got %d)", rt.Burst)
		}
		if rt.Interval.D() < time.Millisecond {
			fail("serve.self_service.revoke_throttle.interval", "must be at least 1ms (got %s)", rt.Interval)
		}
		if rt.MaxClients < 1 {
			fail("serve.self_service.revoke_throttle.max_clients", "must be at least 1 (got %d)", rt.MaxClients)
		}
	}

	// Credentials.
	cr := c.Credentials
	if cr.Issuer == "" {
		errs = append(errs, errors.New("credentials.issuer is required"))
	}
	for i, r := range cr.IssuerRetired {
		if r.Value == "" {
			fail(fmt.Sprintf("credentials.issuer_retired[%d]", i), "must not be empty")
		}
		if r.Value == cr.Issuer || slices.ContainsFunc(cr.IssuerRetired[:i], func(o RetiredIssuer) bool { return o.Value == r.Value }) {
			fail(fmt.Sprintf("credentials.issuer_retired[%d]", i), "must differ from credentials.issuer and from the other retired issuers")
		}
	}
	if cr.ClockSkew < 0 || cr.ClockSkew.D() > MaxClockSkew {
		fail("credentials.clock_skew", "must be between 0s and %s (got %s)", MaxClockSkew, cr.ClockSkew)
	}
	ak := cr.APIKeys
	if ak.Format != KeyFormatV1 && ak.Format != KeyFormatV2 {
		fail("credentials.api_keys.format", "must be v1 or v2 (got %q)", ak.Format)
	}
	if ak.MaxTTL <= 0 {
		fail("credentials.api_keys.max_ttl", "must be greater than 0")
	}
	if ak.DefaultTTL < 0 {
		fail("credentials.api_keys.default_ttl", "must not be negative")
	} else if ak.DefaultTTL > ak.MaxTTL && ak.MaxTTL > 0 {
		fail("credentials.api_keys.default_ttl", "%s exceeds credentials.api_keys.max_ttl %s", ak.DefaultTTL, ak.MaxTTL)
	}
	var apiPrefixes []string
	checkPrefix := func(path, p string, re *regexp.Regexp, limit int) {
		if !re.MatchString(p) {
			fail(path, "must be 1 to %d letters, digits or underscores (got %q)", limit, p)
		}
	}
	checkPrefix("credentials.api_keys.prefix.current", ak.Prefix.Current, keyPrefixRE, 16)
	apiPrefixes = append(apiPrefixes, ak.Prefix.Current)
	for i, p := range ak.Prefix.Retired {
		checkPrefix(fmt.Sprintf("credentials.api_keys.prefix.retired[%d]", i), p, keyPrefixRE, 16)
		apiPrefixes = append(apiPrefixes, p)
	}
	if ak.Prefix.PublicCurrent != "" {
		checkPrefix("credentials.api_keys.prefix.public_current", ak.Prefix.PublicCurrent, keyPrefixRE, 16)
		apiPrefixes = append(apiPrefixes, ak.Prefix.PublicCurrent)
	}
	for i, p := range ak.Prefix.PublicRetired {
		checkPrefix(fmt.Sprintf("credentials.api_keys.prefix.public_retired[%d]", i), p, keyPrefixRE, 16)
		apiPrefixes = append(apiPrefixes, p)
	}
	if h := cr.ImportedKeys.Hashing; h != ImportHashingSHA512_256 && h != ImportHashingHMAC {
		fail("credentials.imported_keys.hashing", "must be sha512_256 or hmac (got %q)", h)
	}
	if ik := cr.ImportedKeys; ik.MinLength < 1 || ik.MinLength > 8192 {
		fail("credentials.imported_keys.min_length", "must be between 1 and 8192 (got %d)", ik.MinLength)
	}
	if ik := cr.ImportedKeys; ik.MinEntropyBits < 1 || ik.MinEntropyBits > 1024 {
		fail("credentials.imported_keys.min_entropy_bits", "must be between 1 and 1024 (got %d)", ik.MinEntropyBits)
	}
	dt := cr.DerivedTokens
	if dt.DefaultTTL <= 0 {
		fail("credentials.derived_tokens.default_ttl", "must be greater than 0")
	}
	for i, u := range dt.JWT.SigningKeys.URLs {
		if !strings.HasPrefix(u.Value(), "base64://") && !strings.HasPrefix(u.Value(), "file://") {
			fail(fmt.Sprintf("credentials.derived_tokens.jwt.signing_keys.urls[%d]", i), "must start with base64:// or file://")
		}
	}
	macaroonPrefixes := append([]string{dt.Macaroon.Prefix.Current}, dt.Macaroon.Prefix.Retired...)
	for i, m := range macaroonPrefixes {
		path := "credentials.derived_tokens.macaroon.prefix.current"
		if i > 0 {
			path = fmt.Sprintf("credentials.derived_tokens.macaroon.prefix.retired[%d]", i-1)
		}
		checkPrefix(path, m, macaroonPrefixRE, 8)
		// Credential routing tries "<macaroon prefix>_v1_" before the
		// issued-key shape, so a key prefix that starts the same way would
		// make every issued key route as a macaroon.
		for _, p := range apiPrefixes {
			if m != "" && strings.HasPrefix(p+"_v1_", m+"_v1_") {
				fail(path, "%q clashes with API key prefix %q: keys would be read as macaroons", m, p)
			}
		}
	}

	// Secrets.
	if c.Secrets.HMAC.Current.IsZero() {
		errs = append(errs, errors.New("secrets.hmac.current is required"))
	} else if n := utf8.RuneCountInString(c.Secrets.HMAC.Current.Value()); n < MinSecretLength {
		fail("secrets.hmac.current", "must be at least %d characters, got %d", MinSecretLength, n)
	}
	for i, r := range c.Secrets.HMAC.Retired {
		if n := utf8.RuneCountInString(r.Value.Value()); n < MinSecretLength {
			fail(fmt.Sprintf("secrets.hmac.retired[%d]", i), "must be at least %d characters, got %d", MinSecretLength, n)
		}
	}

	checkDB(c, fail)

	// Enumerations the schema checks in files; repeated for hand-built values.
	if !slices.Contains([]CacheType{CacheTypeNoop, CacheTypeMemory, CacheTypeRedis}, c.Cache.Type) {
		fail("cache.type", "must be noop, memory or redis (got %q)", c.Cache.Type)
	}
	if b := c.RateLimit.Backend; b != RateLimitBackendMemory && b != RateLimitBackendRedis {
		fail("rate_limit.backend", "must be memory or redis (got %q)", b)
	}
	if (c.Cache.Type == CacheTypeRedis || c.RateLimit.Backend == RateLimitBackendRedis) && len(c.Cache.Redis.Addrs) == 0 {
		fail("cache.redis.addrs", "must not be empty when cache.type or rate_limit.backend is redis")
	}
	if c.LastUsed.FlushInterval <= 0 {
		fail("last_used.flush_interval", "must be greater than 0")
	}
	checkLog(c.Log, fail)
	if r := c.Tracing.SampleRate; r < 0 || r > 1 {
		fail("tracing.sample_rate", "must be between 0 and 1 (got %v)", r)
	}

	checkEnvoyXDS(c.Envoy, fail)

	// Multitenancy.
	mt := c.Multitenancy
	if mt.Enabled && len(mt.Networks) == 0 {
		fail("multitenancy.networks", "must not be empty when multitenancy.enabled is true")
	}
	seen := map[string]int{}
	for i, n := range mt.Networks {
		host := strings.ToLower(n.Hostname)
		if j, dup := seen[host]; dup {
			fail(fmt.Sprintf("multitenancy.networks[%d].hostname", i), "%q is already used by multitenancy.networks[%d]", n.Hostname, j)
		}
		seen[host] = i
	}

	return errors.Join(errs...)
}

// checkDB checks the db section. The DSN is only required by commands that
// open the store (RequireDSN), but a set DSN must name a known driver.
func checkDB(c *Config, fail func(path, format string, args ...any)) {
	if dsn := c.DB.DSN.Value(); dsn != "" && driverOf(dsn) == "" {
		scheme, _, found := strings.Cut(dsn, "://")
		switch {
		case !found:
			fail("db.dsn", "must start with a scheme: sqlite://, postgres://, mysql:// or cockroach://")
		case schemeRE.MatchString(strings.ToLower(scheme)):
			fail("db.dsn", "unsupported scheme %q: want sqlite, postgres, mysql or cockroach", strings.ToLower(scheme))
		default:
			fail("db.dsn", "unsupported scheme: want sqlite, postgres, mysql or cockroach")
		}
	}
	if r := c.DB.ReadReplicaDSN.Value(); r != "" && driverOf(r) != driverOf(c.DB.DSN.Value()) {
		fail("db.read_replica_dsn", "must use the same database driver as db.dsn")
	}
}

// warn adds w to Warnings unless it is there already, on a fresh backing
// array so that copies of c never share appended warnings.
func (c *Config) warn(w string) {
	if slices.Contains(c.Warnings, w) {
		return
	}
	c.Warnings = append(slices.Clip(c.Warnings), w)
}

// RequireDSN returns an error unless db.dsn is set. Commands that open the
// store (serve, migrate) call it; others (version, keys) do not need a
// database.
func (c Config) RequireDSN() error {
	if c.DB.DSN.IsZero() {
		return errors.New("db.dsn is required: set it in the config file or in TALOS_DB_DSN (for example sqlite://./data/talos.db)")
	}
	return nil
}

// A listener is the port of one listener, for checkPorts.
type listener struct {
	path string // key path of the port
	host string
	port int
}

// checkPorts checks that each port is in range and that no two listeners on
// overlapping hosts share a port (0, "any free port", never clashes).
func checkPorts(ls []listener, fail func(path, format string, args ...any)) {
	for i, p := range ls {
		if p.port < 0 || p.port > 65535 {
			fail(p.path, "must be between 0 and 65535 (got %d)", p.port)
			continue
		}
		for _, q := range ls[:i] {
			if p.port != 0 && p.port == q.port && hostsOverlap(p.host, q.host) {
				fail(p.path, "port %d is already used by %s", p.port, q.path)
			}
		}
	}
}

// checkLog checks the log section, which every command uses.
func checkLog(l Log, fail func(path, format string, args ...any)) {
	if !slices.Contains([]LogLevel{LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError}, l.Level) {
		fail("log.level", "must be debug, info, warn or error (got %q)", l.Level)
	}
	if f := l.Format; f != LogFormatJSON && f != LogFormatText {
		fail("log.format", "must be json or text (got %q)", f)
	}
}

func hostsOverlap(a, b string) bool {
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" || h == "[::]" }
	return a == b || wildcard(a) || wildcard(b)
}

// driverOf maps a DSN scheme to a Driver, or "" if there is none.
func driverOf(dsn string) Driver {
	scheme, _, found := strings.Cut(dsn, "://")
	if !found {
		return ""
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3":
		return DriverSQLite
	case "postgres", "postgresql":
		return DriverPostgres
	case "mysql":
		return DriverMySQL
	case "cockroach", "cockroachdb":
		return DriverCockroach
	default:
		return ""
	}
}
