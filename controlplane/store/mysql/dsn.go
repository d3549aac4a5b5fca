package mysql

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
)

// Defaults for what a DSN leaves unset.
const (
	DefaultMaxConnLifetime = time.Hour
	DefaultMaxConnIdleTime = 30 * time.Minute
	DefaultDialTimeout     = 5 * time.Second
	// DefaultReadTimeout bounds each wait for the server, a query's answer
	// included, so it must outlast the longest lock wait
	// (innodb_lock_wait_timeout, 50s by default); callers' contexts
	// normally end a call long before.
	DefaultReadTimeout  = 60 * time.Second
	DefaultWriteTimeout = 30 * time.Second
)

// defaultSQLMode is the session sql_mode unless the DSN sets one: strict, so
// that a value too long for its column is an error instead of being cut.
const defaultSQLMode = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"

// Config is a parsed DSN: the driver's connection settings and the pool's.
// Its String, GoString and LogValue leave the password out, so a Config can
// be printed and logged; Driver.FormatDSN and Driver.Passwd must not be.
type Config struct {
	// Driver holds the connection settings, with those this package
	// enforces already applied. It includes the password.
	Driver *mysqldriver.Config
	Pool   Pool
}

// Pool holds the *sql.DB pool settings a DSN gives as query parameters, with
// defaults for those it omits.
type Pool struct {
	// MaxConns is max_conns: the most open connections; 0 is unlimited.
	// Default max(4, 2×GOMAXPROCS).
	MaxConns int
	// MaxIdleConns is max_idle_conns: the most idle connections kept open;
	// 0 keeps none. Default MaxConns (or max(4, 2×GOMAXPROCS) when that is
	// unlimited), which keeps the prepared verify statement warm.
	MaxIdleConns int
	// MaxConnLifetime is max_conn_lifetime, a Go duration; 0 keeps
	// connections forever. Default DefaultMaxConnLifetime.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime is max_conn_idle_time, a Go duration; 0 keeps idle
	// connections forever. Default DefaultMaxConnIdleTime.
	MaxConnIdleTime time.Duration
}

// ParseDSN parses a mysql:// DSN in either of two forms:
//
//	mysql://user:pass@host:3306/db?params   (a URL; userinfo and db percent-encoded)
//	mysql://user:pass@tcp(host:3306)/db?params   (go-sql-driver's form, as Ory Talos takes it)
//
// The second form is recognised by "tcp(", "tcp4(", "tcp6(" or "unix(" after
// the user; it is the only way to name a unix socket. The database name is
// required; a URL without a port means 3306.
//
// The pool parameters max_conns, max_idle_conns, max_conn_lifetime and
// max_conn_idle_time are taken out and returned in Pool. The other parameters
// are go-sql-driver's (timeout, readTimeout, writeTimeout, tls, …); a name the
// driver does not know sets that session variable (sql_mode,
// innodb_lock_wait_timeout, …). The settings sqlstore depends on are then
// forced whatever the DSN says: parseTime=false, clientFoundRows=true,
// multiStatements=false, interpolateParams=true, rejectReadOnly=true and the
// utf8mb4 charset. Timeouts the DSN omits get the Default values, and
// sql_mode, unless given, is STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION. The
// driver's own logging is discarded: every failure it logs also comes back
// as an error.
//
// Errors never repeat the DSN, which may hold a password.
func ParseDSN(dsn string) (Config, error) {
	rest, ok := strings.CutPrefix(dsn, "mysql://")
	if !ok {
		return Config{}, errors.New("parse mysql dsn: not a mysql:// DSN")
	}
	defaultConns := max(4, 2*runtime.GOMAXPROCS(0))
	p := poolParams{Pool: Pool{
		MaxConns:        defaultConns,
		MaxConnLifetime: DefaultMaxConnLifetime,
		MaxConnIdleTime: DefaultMaxConnIdleTime,
	}}
	var (
		d   *mysqldriver.Config
		err error
	)
	if driverForm(rest) {
		d, err = parseDriverForm(rest, &p)
	} else {
		d, err = parseURLForm(dsn, &p)
	}
	if err != nil {
		return Config{}, fmt.Errorf("parse mysql dsn: %w", err)
	}
	if d.DBName == "" {
		return Config{}, errors.New("parse mysql dsn: no database name")
	}
	if !p.idleSet {
		p.MaxIdleConns = p.MaxConns
		if p.MaxConns == 0 {
			p.MaxIdleConns = defaultConns
		}
	}
	enforce(d)
	return Config{Driver: d, Pool: p.Pool}, nil
}

// String returns the DSN without password and parameters:
// mysql://user@host:3306/db.
func (c Config) String() string {
	d := c.Driver
	if d == nil {
		return "mysql://"
	}
	var b strings.Builder
	b.WriteString("mysql://")
	if d.User != "" {
		b.WriteString(d.User)
		b.WriteByte('@')
	}
	if d.Net == "tcp" {
		b.WriteString(d.Addr)
	} else {
		b.WriteString(d.Net + "(" + d.Addr + ")")
	}
	b.WriteString("/" + d.DBName)
	return b.String()
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with String.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// driverForm reports whether rest (a DSN after "mysql://") names a network
// the way go-sql-driver does.
func driverForm(rest string) bool {
	for _, n := range []string{"tcp(", "tcp4(", "tcp6(", "unix("} {
		if strings.HasPrefix(rest, n) || strings.Contains(rest, "@"+n) {
			return true
		}
	}
	return false
}

// parseDriverForm parses go-sql-driver's DSN form after taking the pool
// parameters out. As in the driver, the parameters follow the first ? after
// the last /.
func parseDriverForm(rest string, p *poolParams) (*mysqldriver.Config, error) {
	slash := strings.LastIndexByte(rest, '/')
	if slash < 0 {
		return nil, errors.New("no /database")
	}
	base, query := rest, ""
	if q := strings.IndexByte(rest[slash:], '?'); q >= 0 {
		base, query = rest[:slash+q], rest[slash+q+1:]
	}
	kept, err := p.split(query)
	if err != nil {
		return nil, err
	}
	if kept != "" {
		base += "?" + kept
	}
	return mysqldriver.ParseDSN(base)
}

// parseURLForm parses a mysql://user:pass@host:port/db?params URL. The
// parameters go through the driver's parser, given the address so that it
// derives the TLS server name from it; user, password and database are set
// from their decoded URL parts, which the driver's form could not carry.
func parseURLForm(dsn string, p *poolParams) (*mysqldriver.Config, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, err
	}
	switch {
	case u.Opaque != "":
		return nil, errors.New("not a mysql://host/database URL")
	case u.Fragment != "" || strings.HasSuffix(dsn, "#"):
		return nil, errors.New("a fragment (#…) is not allowed")
	case u.Host == "":
		return nil, errors.New("no host")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return nil, errors.New("the path must be one database name")
	}
	port := u.Port()
	if port == "" {
		port = "3306"
	}
	kept, err := p.split(u.RawQuery)
	if err != nil {
		return nil, err
	}
	// The driver finds its parameters after the last /, which a URL query
	// may contain; every value it reads that could hold one is unescaped.
	s := "tcp(" + net.JoinHostPort(u.Hostname(), port) + ")/"
	if kept != "" {
		s += "?" + strings.ReplaceAll(kept, "/", "%2F")
	}
	d, err := mysqldriver.ParseDSN(s)
	if err != nil {
		return nil, err
	}
	d.User = u.User.Username()
	d.Passwd, _ = u.User.Password()
	d.DBName = db
	return d, nil
}

// poolParams collects the pool parameters of a DSN.
type poolParams struct {
	Pool
	idleSet bool
}

// split takes the pool parameters out of raw, a query string as the DSN
// spells it, and returns the others as they were.
func (p *poolParams) split(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	var kept []string
	for kv := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		v, err := url.QueryUnescape(v)
		if err != nil {
			return "", fmt.Errorf("parameter %s: %w", k, err)
		}
		switch k {
		case "max_conns":
			if p.MaxConns, err = strconv.Atoi(v); err != nil || p.MaxConns < 0 {
				return "", fmt.Errorf("max_conns must be a non-negative integer, not %q", v)
			}
		case "max_idle_conns":
			if p.MaxIdleConns, err = strconv.Atoi(v); err != nil || p.MaxIdleConns < 0 {
				return "", fmt.Errorf("max_idle_conns must be a non-negative integer, not %q", v)
			}
			p.idleSet = true
		case "max_conn_lifetime":
			if p.MaxConnLifetime, err = time.ParseDuration(v); err != nil || p.MaxConnLifetime < 0 {
				return "", fmt.Errorf("max_conn_lifetime must be a non-negative duration, not %q", v)
			}
		case "max_conn_idle_time":
			if p.MaxConnIdleTime, err = time.ParseDuration(v); err != nil || p.MaxConnIdleTime < 0 {
				return "", fmt.Errorf("max_conn_idle_time must be a non-negative duration, not %q", v)
			}
		case "strict":
			// The driver panics on it.
			return "", errors.New("the strict parameter is not supported; strict mode is the default sql_mode")
		case "":
		default:
			kept = append(kept, kv)
		}
	}
	return strings.Join(kept, "&"), nil
}

// enforce applies the settings sqlstore relies on, and defaults.
func enforce(d *mysqldriver.Config) {
	d.ParseTime = false        // timestamps are BIGINT microseconds; there is nothing to parse
	d.ClientFoundRows = true   // UpdateKey counts matched rows
	d.MultiStatements = false  // only the migration connection runs scripts
	d.InterpolateParams = true // one round trip per query, safe with utf8mb4
	d.RejectReadOnly = true    // a demoted primary's connections are replaced, not reused
	d.CheckConnLiveness = true
	d.Loc = time.UTC
	d.Logger = &mysqldriver.NopLogger{}
	_ = d.Apply(mysqldriver.Charset("utf8mb4", "")) // never fails
	if d.Timeout == 0 {
		d.Timeout = DefaultDialTimeout
	}
	if d.ReadTimeout == 0 {
		d.ReadTimeout = DefaultReadTimeout
	}
	if d.WriteTimeout == 0 {
		d.WriteTimeout = DefaultWriteTimeout
	}
	if _, ok := d.Params["sql_mode"]; !ok {
		if d.Params == nil {
			d.Params = make(map[string]string, 1)
		}
		d.Params["sql_mode"] = defaultSQLMode
	}
}
