package mysql_test

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/store/mysql"
)

// parsed is what a test checks of a Config.
type parsed struct {
	User, Passwd, Net, Addr, DB string
	Params                      map[string]string
	Timeouts                    [3]time.Duration // dial, read, write
	Pool                        mysql.Pool
}

func summarize(c mysql.Config) parsed {
	d := c.Driver
	return parsed{
		User: d.User, Passwd: d.Passwd, Net: d.Net, Addr: d.Addr, DB: d.DBName,
		Params:   d.Params,
		Timeouts: [3]time.Duration{d.Timeout, d.ReadTimeout, d.WriteTimeout},
		Pool:     c.Pool,
	}
}

func TestParseDSN(t *testing.T) {
	t.Parallel()
	n := max(4, 2*runtime.GOMAXPROCS(0))
	defaultPool := mysql.Pool{MaxConns: n, MaxIdleConns: n, MaxConnLifetime: mysql.DefaultMaxConnLifetime, MaxConnIdleTime: mysql.DefaultMaxConnIdleTime}
	defaultTimeouts := [3]time.Duration{mysql.DefaultDialTimeout, mysql.DefaultReadTimeout, mysql.DefaultWriteTimeout}
	strict := map[string]string{"sql_mode": "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"}
	want := func(user, pass, net, addr, db string) parsed {
		return parsed{User: user, Passwd: pass, Net: net, Addr: addr, DB: db, Params: strict, Timeouts: defaultTimeouts, Pool: defaultPool}
	}
	for _, tt := range []struct {
		name, dsn string
		want      parsed
	}{
		{"url", "mysql://talos:s3cret@db.example:3307/talos", want("talos", "s3cret", "tcp", "db.example:3307", "talos")},
		{"url without port", "mysql://talos@db.example/talos", want("talos", "", "tcp", "db.example:3306", "talos")},
		{"url with escapes", "mysql://ta%40los:p%40ss%3Aw%2Frd%3F@db.example/my%2Ddb", want("ta@los", "p@ss:w/rd?", "tcp", "db.example:3306", "my-db")},
		{"url ipv6", "mysql://u@[::1]/db", want("u", "", "tcp", "[::1]:3306", "db")},
		{"url ipv6 with port", "mysql://u@[2001:db8::1]:3310/db", want("u", "", "tcp", "[2001:db8::1]:3310", "db")},
		{"url with parameters", "mysql://u@h/db?max_conns=20&max_idle_conns=5&max_conn_lifetime=1h&max_conn_idle_time=30s" +
			"&readTimeout=5s&timeout=2s&sql_mode=%27ANSI%27&time_zone=%27%2B00:00%27&x=a/b", parsed{
			User: "u", Net: "tcp", Addr: "h:3306", DB: "db",
			Params:   map[string]string{"sql_mode": "'ANSI'", "time_zone": "'+00:00'", "x": "a/b"},
			Timeouts: [3]time.Duration{2 * time.Second, 5 * time.Second, mysql.DefaultWriteTimeout},
			Pool:     mysql.Pool{MaxConns: 20, MaxIdleConns: 5, MaxConnLifetime: time.Hour, MaxConnIdleTime: 30 * time.Second},
		}},
		{"url with zero lifetimes", "mysql://u@h/db?max_conns=3&max_conn_lifetime=0s&max_conn_idle_time=0", parsed{
			User: "u", Net: "tcp", Addr: "h:3306", DB: "db", Params: strict, Timeouts: defaultTimeouts,
			Pool: mysql.Pool{MaxConns: 3, MaxIdleConns: 3},
		}},
		{"unlimited connections", "mysql://u@h/db?max_conns=0", parsed{
			User: "u", Net: "tcp", Addr: "h:3306", DB: "db", Params: strict, Timeouts: defaultTimeouts,
			Pool: mysql.Pool{MaxConns: 0, MaxIdleConns: n, MaxConnLifetime: mysql.DefaultMaxConnLifetime, MaxConnIdleTime: mysql.DefaultMaxConnIdleTime},
		}},
		{"no idle connections", "mysql://u@h/db?max_idle_conns=0", parsed{
			User: "u", Net: "tcp", Addr: "h:3306", DB: "db", Params: strict, Timeouts: defaultTimeouts,
			Pool: mysql.Pool{MaxConns: n, MaxIdleConns: 0, MaxConnLifetime: mysql.DefaultMaxConnLifetime, MaxConnIdleTime: mysql.DefaultMaxConnIdleTime},
		}},
		{"driver form", "mysql://root@tcp(127.0.0.1:3306)/test?parseTime=true", want("root", "", "tcp", "127.0.0.1:3306", "test")},
		{"driver form with pool", "mysql://root:pw@tcp(h:1)/test?max_conns=3&writeTimeout=1s", parsed{
			User: "root", Passwd: "pw", Net: "tcp", Addr: "h:1", DB: "test", Params: strict,
			Timeouts: [3]time.Duration{mysql.DefaultDialTimeout, mysql.DefaultReadTimeout, time.Second},
			Pool:     mysql.Pool{MaxConns: 3, MaxIdleConns: 3, MaxConnLifetime: mysql.DefaultMaxConnLifetime, MaxConnIdleTime: mysql.DefaultMaxConnIdleTime},
		}},
		{"driver form password with @ and /", "mysql://u:p@s/s@tcp(h:1)/db", want("u", "p@s/s", "tcp", "h:1", "db")},
		{"driver form unix socket", "mysql://u@unix(/run/mysqld/mysqld.sock)/db", want("u", "", "unix", "/run/mysqld/mysqld.sock", "db")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := mysql.ParseDSN(tt.dsn)
			if err != nil {
				t.Fatalf("ParseDSN: %v", err)
			}
			if d := cmp.Diff(tt.want, summarize(c)); d != "" {
				t.Errorf("mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// TestParseDSN_Enforced: the settings sqlstore relies on hold whatever the
// DSN says.
func TestParseDSN_Enforced(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"mysql://u@h/db?parseTime=true&clientFoundRows=false&multiStatements=true&interpolateParams=false&rejectReadOnly=false&charset=latin1&checkConnLiveness=false",
		"mysql://u@tcp(h)/db?parseTime=true&clientFoundRows=false&multiStatements=true&interpolateParams=false&rejectReadOnly=false&charset=latin1&checkConnLiveness=false",
	} {
		c, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("ParseDSN(%q): %v", dsn, err)
		}
		d := c.Driver
		got := [6]bool{d.ParseTime, d.ClientFoundRows, d.MultiStatements, d.InterpolateParams, d.RejectReadOnly, d.CheckConnLiveness}
		if want := [6]bool{false, true, false, true, true, true}; got != want {
			t.Errorf("ParseDSN(%q): parseTime, clientFoundRows, multiStatements, interpolateParams, rejectReadOnly, checkConnLiveness = %v, want %v", dsn, got, want)
		}
		if f := d.FormatDSN(); !strings.Contains(f, "charset=utf8mb4") || strings.Contains(f, "latin1") {
			t.Errorf("ParseDSN(%q): charset is not utf8mb4: %s", dsn, strings.ReplaceAll(f, d.Passwd, "…"))
		}
		if d.Loc != time.UTC {
			t.Errorf("ParseDSN(%q): loc = %v, want UTC", dsn, d.Loc)
		}
	}
}

func TestParseDSN_Errors(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"",
		"postgres://u:s3cret@h/db",
		"u:s3cret@tcp(h:3306)/db",
		"mysql://u:s3cret@h",
		"mysql://u:s3cret@h/",
		"mysql://u:s3cret@h/a/b",
		"mysql://u:s3cret@h/db#frag",
		"mysql://u:s3cret@/db",
		"mysql://u:s3cret@h:port/db",
		"mysql://u:s3cret@h/db%zz",
		"mysql://u:s3cret@h/db?max_conns=-1",
		"mysql://u:s3cret@h/db?max_conns=many",
		"mysql://u:s3cret@h/db?max_idle_conns=-1",
		"mysql://u:s3cret@h/db?max_conn_lifetime=forever",
		"mysql://u:s3cret@h/db?max_conn_idle_time=-1s",
		"mysql://u:s3cret@h/db?max_conns=%zz",
		"mysql://u:s3cret@h/db?strict=true", // the driver panics on it
		"mysql://u:s3cret@h/db?readTimeout=soon",
		"mysql://u:s3cret@h/db?tls=no-such-config",
		"mysql://u:s3cret@tcp(h:3306)",
		"mysql://u:s3cret@tcp(h:3306/db",
		"mysql://u:s3cret@tcp(h:3306)/",
		"mysql://u:s3cret@tcp(h:3306)/db?strict=1",
		"mysql://u:s3cret@tcp(h:3306)/db?max_conns=-2",
	} {
		c, err := mysql.ParseDSN(dsn)
		if err == nil {
			t.Errorf("ParseDSN(%q) = %v, want an error", dsn, c)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseDSN(%q): error %q contains the password", dsn, err)
		}
	}
}

// TestConfig_Redacted: a Config prints and logs without its password.
func TestConfig_Redacted(t *testing.T) {
	t.Parallel()
	c, err := mysql.ParseDSN("mysql://talos:s3cret@db.example:3306/talos")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("open", "db", c)
	for _, s := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), logged.String()} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%q contains the password", s)
		}
	}
	if got, want := c.String(), "mysql://talos@db.example:3306/talos"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
