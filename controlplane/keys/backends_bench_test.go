package keys_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/mysql"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
	"github.com/talos-project/talos/pkg/credential"
)

// benchBackends opens an empty, migrated store per available backend.
func benchBackends(b testing.TB) map[string]func(b testing.TB) store.Store {
	out := map[string]func(b testing.TB) store.Store{"sqlite": func(b testing.TB) store.Store { return newTestStore(b) }}
	if os.Getenv(pgtest.EnvDSN) != "" {
		out["postgres"] = func(b testing.TB) store.Store {
			s, err := postgres.Open(b.Context(), pgtest.NewSchema(b).DSN, postgres.Options{AutoMigrate: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}
	}
	if dsn := os.Getenv("TALOS_TEST_MYSQL_DSN"); dsn != "" {
		out["mysql"] = func(b testing.TB) store.Store { return newMySQLBenchStore(b, dsn) }
	}
	return out
}

func newMySQLBenchStore(b testing.TB, dsn string) store.Store {
	cfg, err := gomysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		b.Fatal(err)
	}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		b.Fatal(err)
	}
	admin := sql.OpenDB(conn)
	name := fmt.Sprintf("talos_bench_%d", time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { admin.Exec("DROP DATABASE " + name); admin.Close() })
	s, err := mysql.Open(b.Context(), fmt.Sprintf("mysql://%s@%s/%s", cfg.User, cfg.Addr, name), mysql.Options{AutoMigrate: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkBackends measures the service layer's issue and verify on every
// available backend (SQLite always; PostgreSQL and MySQL when their
// TALOS_TEST_* DSNs are set), 1,000 keys each, one caller.
func BenchmarkBackends(b *testing.B) {
	backends := benchBackends(b)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range backends {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			ts := newTestService(b, withStore(backends[name](b)))
			b.Run("issue", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := ts.svc.Issue(b.Context(), tenantA, issueInput("bench")); err != nil {
						b.Fatal(err)
					}
				}
			})
			creds := make([]string, 1000)
			for i := range creds {
				_, creds[i] = ts.mustIssue(b, tenantA, issueInput("bench"))
			}
			b.Run("verify", func(b *testing.B) {
				benchVerify(b, ts.svc, creds)
			})
		})
	}
}

func benchVerify(b *testing.B, svc *keys.Service, creds []string) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, 1<<16)
	i := 0
	for b.Loop() {
		start := time.Now()
		if _, err := svc.Verify(context.Background(), credential.Presented{Tenant: tenantA, Credential: creds[i%len(creds)]}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkVerify_Postgres1M is a service-layer verify against PostgreSQL
// holding 1,000,000 keys: 999,000 copies of a template row made on the
// server, plus 1,000 keys issued through the service whose credentials are
// verified round robin. It reports p50 and p99.
func BenchmarkVerify_Postgres1M(b *testing.B) {
	if testing.Short() {
		b.Skip("seeding 1,000,000 keys is not short")
	}
	sch := pgtest.NewSchema(b)
	st, err := postgres.Open(b.Context(), sch.DSN, postgres.Options{AutoMigrate: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ts := newTestService(b, withStore(st))
	creds := make([]string, 1000)
	var template credential.Key
	for i := range creds {
		template, creds[i] = ts.mustIssue(b, tenantA, issueInput("bench"))
	}
	const columns = `nid, kind, actor_id, name, scopes, metadata, status, visibility, rate_limit_quota, rate_limit_window_ms,
rate_limit_unit, allowed_cidrs, revocation_reason, revocation_description, create_time, update_time,
expire_time, last_used_time, token_prefix, version, secret_hash`
	_, err = sch.Admin.ExecContext(b.Context(), `INSERT INTO `+sch.Name+`.api_keys (key_id, `+columns+`)
SELECT lpad(to_hex((g * 2654435761) % 4294967296), 8, '0') || '-5c1e-4f7a-9d2b-' || lpad(to_hex(g), 12, '0'), `+columns+`
FROM `+sch.Name+`.api_keys t, generate_series(0, 998999) g WHERE t.key_id = $1`, string(template.ID))
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
	if _, err := sch.Admin.ExecContext(b.Context(), `ANALYZE `+sch.Name+`.api_keys`); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	benchVerify(b, ts.svc, creds)
}
