package postgres_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/talos-project/talos/controlplane/store/cockroach"
	"github.com/talos-project/talos/controlplane/store/postgres"
)

// secretPassword is a password no other part of a fuzzed DSN is likely to
// spell, so finding it in an error or a description means it leaked.
const secretPassword = "pw-Qz7sEcReT"

// FuzzParseDSN feeds DSNs with a known password to the PostgreSQL and
// CockroachDB parsers: neither may panic, and neither an error nor the
// description of a parsed config may ever show the password (DSNs come from
// configuration, and both end up in logs).
func FuzzParseDSN(f *testing.F) {
	f.Add("postgres", "user", "db.example:5432", "talos", "sslmode=disable")
	f.Add("postgresql", "u", "[::1]:5432", "t", "max_conns=8&max_conn_lifetime=30m")
	f.Add("postgres", "u", "h1:5432,h2:5433", "t", "target_session_attrs=read-write")
	f.Add("postgres", "u", "%2Ftmp", "t", "pool_max_conns=x")
	f.Add("cockroach", "root", "crdb:26257", "defaultdb", "sslmode=verify-full&sslrootcert=/x")
	f.Add("cockroachdb", "root", "crdb", "defaultdb", "application_name=a%zz")
	f.Add("postgres", "u", "h", "t", "connect_timeout=-1&search_path=a,b")
	f.Fuzz(func(t *testing.T, scheme, user, host, db, query string) {
		dsn := fmt.Sprintf("%s://%s:%s@%s/%s?%s", scheme, user, secretPassword, host, db, query)
		parse := postgres.ParseDSN
		if strings.HasPrefix(strings.ToLower(scheme), "cockroach") {
			parse = cockroach.ParseDSN
		}
		cfg, err := parse(dsn)
		if err != nil {
			if strings.Contains(err.Error(), secretPassword) {
				t.Fatalf("the error shows the password: %v", err)
			}
			return
		}
		for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg.Pool)} {
			if strings.Contains(s, secretPassword) {
				t.Fatalf("the description shows the password: %s", s)
			}
		}
		if cfg.Pool.MaxConns < 0 || cfg.Pool.MaxIdleConns < 0 || cfg.Pool.MaxConnLifetime < 0 || cfg.Pool.MaxConnIdleTime < 0 {
			t.Fatalf("negative pool setting accepted: %+v", cfg.Pool)
		}
	})
}

// TestParseDSNNeverQuotesAPassword holds the cases the fuzzer found: an
// unencoded '/' or '?' in a password moved part of it to where pgx's and
// net/url's errors quote it.
func TestParseDSNNeverQuotesAPassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:" + secretPassword + "/x@db.example:5432/talos",
		"postgres://u?:" + secretPassword + "@db.example/talos",
		"postgres://u:a:" + secretPassword + "@db.example/talos",
		"cockroach://u:" + secretPassword + "/x@crdb/talos",
	} {
		parse := postgres.ParseDSN
		if strings.HasPrefix(dsn, "cockroach") {
			parse = cockroach.ParseDSN
		}
		_, err := parse(dsn)
		if err != nil && strings.Contains(err.Error(), secretPassword) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
