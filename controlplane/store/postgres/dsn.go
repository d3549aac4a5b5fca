package postgres

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pool defaults, used for the parameters a DSN leaves out. The lifetimes are
// pgxpool's defaults.
const (
	DefaultMaxConnLifetime = time.Hour
	DefaultMaxConnIdleTime = 30 * time.Minute
	// DefaultConnectTimeout bounds one connection attempt when the DSN sets
	// no connect_timeout, so that an unreachable host fails a call instead of
	// hanging it until the caller's deadline, if it has one.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultApplicationName is the application_name a connection reports
	// (in pg_stat_activity) when the DSN sets none.
	DefaultApplicationName = "talos"
)

// DefaultMaxConns is the pool size when the DSN sets none: twice GOMAXPROCS,
// at least 4.
func DefaultMaxConns() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// Config is a parsed DSN: the connection settings pgx dials with and the Pool
// settings. Build one with ParseDSN. It holds the password, if the DSN has
// one, so it must not be printed; its String method does not show it.
type Config struct {
	conn *pgx.ConnConfig
	// Pool is how the *sql.DB pools connections.
	Pool Pool
}

// Pool holds the pool parameters of a DSN, with defaults filled in. Values
// mean what database/sql's setters say: MaxConns 0 is unlimited, MaxIdleConns
// 0 keeps no idle connection, and a zero lifetime or idle time never closes a
// connection for age.
type Pool struct {
	MaxConns        int           // max_conns or pool_max_conns; DefaultMaxConns()
	MaxIdleConns    int           // max_idle_conns, at least pool_min_conns; MaxConns, or DefaultMaxConns() if that is 0
	MaxConnLifetime time.Duration // max_conn_lifetime or pool_max_conn_lifetime; DefaultMaxConnLifetime
	MaxConnIdleTime time.Duration // max_conn_idle_time or pool_max_conn_idle_time; DefaultMaxConnIdleTime
}

// String describes the database without credentials: `database "talos" on
// db.example:5432`.
func (c Config) String() string {
	if c.conn == nil {
		return "unconfigured database"
	}
	host := c.conn.Host
	if !strings.HasPrefix(host, "/") { // not a Unix socket directory
		host = net.JoinHostPort(host, strconv.Itoa(int(c.conn.Port)))
	}
	return fmt.Sprintf("database %q on %s", c.conn.Database, host)
}

// withSchema returns a copy of c whose connections use schema alone as their
// search_path.
func (c Config) withSchema(schema string) Config {
	c.conn = c.conn.Copy()
	c.conn.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	return c
}

// pool parameters: the DSN query keys ParseDSN takes out, by the Pool field
// they set. pgx would otherwise send them to the server as run-time settings,
// which it rejects.
var (
	maxConnsKeys    = [2]string{"max_conns", "pool_max_conns"}
	lifetimeKeys    = [2]string{"max_conn_lifetime", "pool_max_conn_lifetime"}
	idleTimeKeys    = [2]string{"max_conn_idle_time", "pool_max_conn_idle_time"}
	maxIdleConnsKey = "max_idle_conns"
	minConnsKey     = "pool_min_conns"
)

// ParseDSN parses a postgres:// or postgresql:// URL (see
// https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS,
// and pgx for the parameters it adds). The pool parameters max_conns,
// max_idle_conns, max_conn_lifetime and max_conn_idle_time, and pgx's
// pool_max_conns, pool_min_conns, pool_max_conn_lifetime and
// pool_max_conn_idle_time, are taken out of the URL into Config.Pool;
// durations are Go duration strings ("30m"). Other pool_ parameters of
// pgxpool are rejected: the pool is database/sql's. Every other parameter is
// pgx's: sslmode, connect_timeout, search_path, application_name and other
// server settings.
//
// Errors never contain the DSN, which may hold a password.
func ParseDSN(dsn string) (Config, error) {
	return parseDSN("postgres", dsn)
}

// parseDSN is ParseDSN with name, the database named in errors.
func parseDSN(name, dsn string) (Config, error) {
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("parse %s dsn: "+format, append([]any{name}, args...)...)
	}
	lower := strings.ToLower(dsn)
	if !strings.HasPrefix(lower, "postgres://") && !strings.HasPrefix(lower, "postgresql://") {
		return fail("not a postgres:// or postgresql:// URL")
	}
	// pgx recognises only the lower-case schemes.
	scheme, rest, _ := strings.Cut(dsn, "://")
	dsn = strings.ToLower(scheme) + "://" + rest

	base, rawQuery, _ := strings.Cut(dsn, "?")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fail("malformed query string")
	}
	pool, err := takePool(query)
	if err != nil {
		return fail("%v", err)
	}
	_, connectTimeoutSet := query["connect_timeout"]
	if len(query) > 0 {
		base += "?" + query.Encode()
	}

	conn, err := pgx.ParseConfig(base)
	if err != nil {
		// Neither pgx's error (which masks the password only in a URL it can
		// split) nor net/url's (which quotes the offending part: a port that
		// is really half a password) may be shown: say what is wrong in
		// words of our own.
		return fail("%s", urlProblem(base))
	}
	if !connectTimeoutSet && conn.ConnectTimeout == 0 {
		conn.ConnectTimeout = DefaultConnectTimeout
	}
	if conn.RuntimeParams["application_name"] == "" {
		conn.RuntimeParams["application_name"] = DefaultApplicationName
	}
	return Config{conn: conn, Pool: pool}, nil
}

// urlProblem describes why a DSN that pgx refused is malformed without
// quoting any part of it.
func urlProblem(dsn string) string {
	_, err := url.Parse(dsn)
	var (
		esc  url.EscapeError
		host url.InvalidHostError
	)
	switch {
	case err == nil:
		return "not a valid connection URL (check the parameter values)"
	case errors.As(err, &esc):
		return "invalid percent-encoding in the URL"
	case errors.As(err, &host):
		return "invalid character in the host name"
	}
	return "malformed URL (a user name or password holding '/', '?', '#', '@' or ':' must be percent-encoded)"
}

// takePool removes the pool parameters from q and returns them, defaults
// filled in.
func takePool(q url.Values) (Pool, error) {
	for k := range q {
		if strings.HasPrefix(k, "pool_") && !isPoolKey(k) {
			return Pool{}, fmt.Errorf("pool parameter %s is not supported", k)
		}
	}
	p := Pool{
		MaxConns:        DefaultMaxConns(),
		MaxConnLifetime: DefaultMaxConnLifetime,
		MaxConnIdleTime: DefaultMaxConnIdleTime,
	}
	maxConns, maxSet, err := takeAlias(q, maxConnsKeys, parseCount)
	if err != nil {
		return Pool{}, err
	}
	if maxSet {
		p.MaxConns = maxConns
	}
	p.MaxIdleConns = p.MaxConns
	if p.MaxConns == 0 { // unlimited: keep the default number warm
		p.MaxIdleConns = DefaultMaxConns()
	}
	idle, idleSet, err := take(q, maxIdleConnsKey, parseCount)
	if err != nil {
		return Pool{}, err
	}
	if idleSet {
		p.MaxIdleConns = idle
	}
	minConns, minSet, err := take(q, minConnsKey, parseCount)
	if err != nil {
		return Pool{}, err
	}
	if minSet {
		if p.MaxConns > 0 && minConns > p.MaxConns {
			return Pool{}, fmt.Errorf("%s (%d) is greater than the maximum connections (%d)", minConnsKey, minConns, p.MaxConns)
		}
		p.MaxIdleConns = max(p.MaxIdleConns, minConns)
	}
	if d, ok, err := takeAlias(q, lifetimeKeys, parseDuration); err != nil {
		return Pool{}, err
	} else if ok {
		p.MaxConnLifetime = d
	}
	if d, ok, err := takeAlias(q, idleTimeKeys, parseDuration); err != nil {
		return Pool{}, err
	} else if ok {
		p.MaxConnIdleTime = d
	}
	return p, nil
}

func isPoolKey(k string) bool {
	for _, keys := range [][2]string{maxConnsKeys, lifetimeKeys, idleTimeKeys} {
		if k == keys[1] {
			return true
		}
	}
	return k == minConnsKey
}

// takeAlias takes the parameter that has two names; setting both is an error.
func takeAlias[T any](q url.Values, keys [2]string, parse func(string) (T, error)) (T, bool, error) {
	var zero T
	if q.Has(keys[0]) && q.Has(keys[1]) {
		return zero, false, fmt.Errorf("set %s or %s, not both", keys[0], keys[1])
	}
	if q.Has(keys[1]) {
		return take(q, keys[1], parse)
	}
	return take(q, keys[0], parse)
}

// take removes key from q and parses its one value.
func take[T any](q url.Values, key string, parse func(string) (T, error)) (T, bool, error) {
	var zero T
	vs, ok := q[key]
	if !ok {
		return zero, false, nil
	}
	delete(q, key)
	if len(vs) != 1 {
		return zero, false, fmt.Errorf("%s is set %d times", key, len(vs))
	}
	v, err := parse(vs[0])
	if err != nil {
		return zero, false, fmt.Errorf("%s: %w", key, err)
	}
	return v, true, nil
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	return n, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a non-negative Go duration (such as 30m)", s)
	}
	return d, nil
}
