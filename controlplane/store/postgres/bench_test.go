package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/jackc/pgx/v5"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
	"github.com/talos-project/talos/pkg/credential"
)

const benchKeys = 1_000_000

// benchSchema is the schema of benchKeys keys that the benchmarks share. It
// is seeded once per process, kept between runs of the benchmarks (-count),
// and dropped by TestMain.
var benchSchema struct {
	once  sync.Once
	admin *sql.DB
	name  string
	dsn   string
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchSchema.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := benchSchema.admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{benchSchema.name}.Sanitize()+" CASCADE")
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "drop benchmark schema %s: %v\n", benchSchema.name, err)
		}
		_ = benchSchema.admin.Close()
	}
	os.Exit(code)
}

// benchID is the ID of the i-th benchmark key, as seedBench writes it in
// SQL: a hashed prefix spreads neighbours over the primary key.
func benchID(i int) credential.KeyID {
	return credential.KeyID(fmt.Sprintf("%08x-5c1e-4f7a-9d2b-%012x", uint32(i*2654435761), i))
}

// newBenchStore returns a store over the shared schema of benchKeys keys,
// seeding it the first time, and their IDs.
func newBenchStore(b *testing.B) (store.Store, []credential.KeyID) {
	b.Helper()
	if testing.Short() {
		b.Skip("seeding 1,000,000 keys is not short")
	}
	admin := pgtest.AdminDSN(b)
	benchSchema.once.Do(func() { benchSchema.err = seedBench(admin) })
	if benchSchema.err != nil {
		b.Fatalf("seed the benchmark schema: %v", benchSchema.err)
	}
	s, err := postgres.Open(b.Context(), benchSchema.dsn, postgres.Options{})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ids := make([]credential.KeyID, benchKeys)
	for i := range ids {
		ids[i] = benchID(i)
	}
	return s, ids
}

// seedBench creates the benchmark schema: one realistic key written by the
// store, copied benchKeys times by one INSERT … SELECT on the server.
func seedBench(admin string) error {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return err
	}
	benchSchema.admin = stdlib.OpenDB(*cfg)
	benchSchema.name = "talos_bench_" + strings.ToLower(rand.Text())
	if _, err := benchSchema.admin.ExecContext(ctx, "CREATE SCHEMA "+benchSchema.name); err != nil {
		return err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("search_path", benchSchema.name)
	u.RawQuery = q.Encode()
	benchSchema.dsn = u.String()

	s, err := postgres.Open(ctx, benchSchema.dsn, postgres.Options{AutoMigrate: true})
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	template := credential.Key{
		Tenant: credential.DefaultTenant, Kind: credential.KindIssued, ID: "template",
		Name: "service key", ActorID: "user:0",
		Scopes:       []string{"keys:read", "keys:write", "billing:read"},
		Metadata:     json.RawMessage(`{"team":"platform","env":"prod"}`),
		Status:       credential.StateActive,
		Visibility:   credential.VisibilitySecret,
		RatePolicy:   &credential.RatePolicy{Quota: 100, Window: time.Minute, Unit: "request"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		CreateTime:   now, UpdateTime: now, ExpireTime: now.AddDate(1, 0, 0),
		Prefix: "talos", Version: "v2", SecretHash: make([]byte, 32),
	}
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, template) }); err != nil {
		return err
	}
	const columns = `name, scopes, metadata, status, visibility, rate_limit_quota, rate_limit_window_ms,
rate_limit_unit, allowed_cidrs, revocation_reason, revocation_description, create_time, update_time,
expire_time, last_used_time, request_id, token_prefix, version, secret_hash, superseded_by`
	_, err = benchSchema.admin.ExecContext(ctx, `INSERT INTO `+benchSchema.name+`.api_keys (nid, kind, key_id, actor_id, `+columns+`)
SELECT t.nid, t.kind,
       lpad(to_hex((g * 2654435761) % 4294967296), 8, '0') || '-5c1e-4f7a-9d2b-' || lpad(to_hex(g), 12, '0'),
       'user:' || (g % 1000), `+columns+`
FROM `+benchSchema.name+`.api_keys t, generate_series(0, $1::bigint - 1) g
WHERE t.key_id = 'template'`, benchKeys)
	if err != nil {
		return err
	}
	_, err = benchSchema.admin.ExecContext(ctx, `ANALYZE `+benchSchema.name+`.api_keys`)
	return err
}

// BenchmarkGetKey is the verify query against 1,000,000 keys, one caller
// and many, with the latency percentiles of single calls.
func BenchmarkGetKey(b *testing.B) {
	s, ids := newBenchStore(b)
	ctx := b.Context()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		lat := make([]time.Duration, 0, 1<<16)
		i := 0
		for b.Loop() {
			start := time.Now()
			if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			i += 7919 // a prime stride: spread over the table
		}
		reportPercentiles(b, lat)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var (
			mu  sync.Mutex
			all []time.Duration
		)
		b.RunParallel(func(pb *testing.PB) {
			lat := make([]time.Duration, 0, 1<<14)
			i := int(time.Now().UnixNano() % benchKeys)
			for pb.Next() {
				start := time.Now()
				if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, ids[i%len(ids)]); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(start))
				i += 7919
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		reportPercentiles(b, all)
	})
}

// reportPercentiles reports the median and 99th percentile of lat.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
