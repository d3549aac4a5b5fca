package mysql_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/talos-project/talos/controlplane/store/mysql"
)

const secretPassword = "pw-Qz7sEcReT"

// FuzzParseDSN feeds both DSN forms with a known password: no panic, no
// error or description that shows the password, and on success the settings
// sqlstore depends on are forced whatever the DSN said.
func FuzzParseDSN(f *testing.F) {
	f.Add(false, "root", "127.0.0.1:3306", "test", "parseTime=true")
	f.Add(true, "root", "tcp(127.0.0.1:3306)", "test", "multiStatements=true&interpolateParams=false")
	f.Add(true, "u", "unix(/run/mysqld.sock)", "t", "sql_mode=ANSI&max_conns=3")
	f.Add(false, "u%40x", "[::1]", "t%2Fx", "max_conn_lifetime=1h&clientFoundRows=false")
	f.Add(false, "u", "h:3306", "t", "charset=latin1&rejectReadOnly=false&timeout=-1s")
	f.Fuzz(func(t *testing.T, driverForm bool, user, host, db, query string) {
		if driverForm && !strings.Contains(host, "(") {
			host = "tcp(" + host + ")"
		}
		dsn := fmt.Sprintf("mysql://%s:%s@%s/%s?%s", user, secretPassword, host, db, query)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			if strings.Contains(err.Error(), secretPassword) {
				t.Fatalf("the error shows the password: %v", err)
			}
			return
		}
		for _, s := range []string{cfg.String(), fmt.Sprintf("%#v", cfg), fmt.Sprint(cfg), cfg.LogValue().String(), slog.AnyValue(cfg).Resolve().String()} {
			if strings.Contains(s, secretPassword) {
				t.Fatalf("the description shows the password: %s", s)
			}
		}
		d := cfg.Driver
		if d.ParseTime || !d.ClientFoundRows || d.MultiStatements || !d.InterpolateParams || !d.RejectReadOnly {
			t.Fatalf("a forced setting was overridden by the DSN %q: %+v", query, d)
		}
		if d.DBName == "" {
			t.Fatal("parsed without a database name")
		}
	})
}
