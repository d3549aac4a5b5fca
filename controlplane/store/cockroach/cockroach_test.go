package cockroach_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/cockroach"
	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
	"github.com/talos-project/talos/controlplane/store/storetest"
	"github.com/talos-project/talos/pkg/credential"
)

// No CockroachDB binary can be had here, so these tests run the CockroachDB
// dialect, migrations and retry path against the PostgreSQL server of
// TALOS_TEST_POSTGRES_DSN, in a schema of their own.

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newTestStore(t)
		return s
	})
}

// cockroachDSN returns sch's DSN under the cockroach:// scheme.
func cockroachDSN(sch *pgtest.Schema) string {
	return "cockroach://" + strings.SplitN(sch.DSN, "://", 2)[1]
}

// newTestStore migrates a schema of its own with CockroachDB's migrations
// and opens the store over it, closing it when t ends.
//
// CockroachDB compares strings by bytes, so its schema declares no
// collation; PostgreSQL would order key IDs by the database's collation, so
// the test gives key_id the "C" collation, which is what CockroachDB does
// natively.
func newTestStore(t *testing.T) (*sqlstore.Store, *pgtest.Schema) {
	t.Helper()
	ctx := t.Context()
	sch := pgtest.NewSchema(t)
	dsn := cockroachDSN(sch)
	if err := cockroach.Migrate(ctx, dsn); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := sch.Admin.ExecContext(ctx, `ALTER TABLE `+sch.Name+`.api_keys ALTER COLUMN key_id TYPE TEXT COLLATE "C"`); err != nil {
		t.Fatalf("emulate CockroachDB's byte order: %v", err)
	}
	s, err := cockroach.Open(ctx, dsn, cockroach.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, sch
}

// TestInTx_Retries40001: crdb.ExecuteTx runs a function that failed with a
// serialization failure again, from the savepoint, and commits what the
// last run wrote; a function that keeps failing gives up with fn's error
// and writes nothing.
func TestInTx_Retries40001(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newTestStore(t)
	tenant := credential.Tenant("t")
	restart := &pgconn.PgError{Code: "40001", Message: "restart transaction"}

	runs := 0
	err := s.InTx(ctx, func(tx store.Tx) error {
		runs++
		// Each run writes, so a retry that did not roll back the first run
		// would fail on the duplicate.
		if err := tx.CreateKey(ctx, minimalKey(tenant, "once")); err != nil {
			return err
		}
		if runs == 1 {
			return restart
		}
		return nil
	})
	if err != nil || runs != 2 {
		t.Fatalf("InTx failing once with 40001 = %v after %d runs, want nil after 2", err, runs)
	}
	if _, err := s.GetKey(ctx, tenant, credential.KindIssued, "once"); err != nil {
		t.Errorf("GetKey of the retried transaction's key: %v", err)
	}

	runs = 0
	err = s.InTx(ctx, func(tx store.Tx) error {
		runs++
		if err := tx.CreateKey(ctx, minimalKey(tenant, "never")); err != nil {
			return err
		}
		return restart
	})
	if err != error(restart) || runs < 2 {
		t.Errorf("InTx always failing with 40001 = %v after %d runs, want fn's error after several", err, runs)
	}
	_, err = s.GetKey(ctx, tenant, credential.KindIssued, "never")
	if !errors.Is(err, credential.ErrNotFound) {
		t.Errorf("GetKey of the abandoned transaction's key: error = %v, want ErrNotFound", err)
	}

	// Other errors are not retried.
	runs = 0
	boom := errors.New("boom")
	if err := s.InTx(ctx, func(store.Tx) error { runs++; return boom }); err != boom || runs != 1 {
		t.Errorf("InTx failing with another error = %v after %d runs, want it unchanged after 1", err, runs)
	}
}

// TestStore_EventCommitOrder: the events_lock row makes a transaction that
// appends an event wait for an earlier one.
func TestStore_EventCommitOrder(t *testing.T) {
	t.Parallel()
	s, sch := newTestStore(t)
	pgtest.CheckEventCommitOrder(t, s, sch)
}

func TestStore_BatchRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t)
	pgtest.CheckBatchRoundTrip(t, s)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := cockroachDSN(pgtest.NewSchema(t))
	if _, err := cockroach.Open(ctx, dsn, cockroach.Options{}); !errors.Is(err, migrate.ErrNotMigrated) {
		t.Fatalf("Open of an empty schema: error = %v, want one wrapping migrate.ErrNotMigrated", err)
	}
	for range 2 {
		if err := cockroach.Migrate(ctx, dsn); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	sts, err := cockroach.MigrationStatus(ctx, dsn)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	want := []migrate.State{{Version: 1, Name: "init", Applied: true}, {Version: 2, Name: "signing_keys", Applied: true}}
	if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
		t.Errorf("status after Migrate mismatch (-want +got):\n%s", d)
	}
}

// TestMigrate_Concurrent: without a lock, of runs racing for one
// migration the losers run again and find it applied.
func TestMigrate_Concurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	sch := pgtest.NewSchema(t)
	const runners = 6
	errs := make([]error, runners)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range runners {
		wg.Go(func() {
			<-start
			errs[i] = cockroach.Migrate(ctx, cockroachDSN(sch))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("runner %d: %v", i, err)
		}
	}
	var n int
	if err := sch.Admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+sch.Name+`.schema_migrations`).Scan(&n); err != nil || n != 2 {
		t.Errorf("schema_migrations holds %d rows, %v; want 2", n, err)
	}
}

// TestMigrations: CockroachDB's migrations are PostgreSQL's, but for the
// files this package replaces.
func TestMigrations(t *testing.T) {
	t.Parallel()
	ms, err := migrate.Load(cockroach.Migrations())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	if d := cmp.Diff([]string{"init", "signing_keys"}, names); d != "" {
		t.Fatalf("migrations mismatch (-want +got):\n%s", d)
	}
	if strings.Contains(ms[0].SQL, `TEXT COLLATE "C"`) || !strings.Contains(ms[0].SQL, "events_lock") {
		t.Errorf("0001_init is not CockroachDB's own")
	}
	if !strings.Contains(ms[1].SQL, "CREATE TABLE signing_keys") {
		t.Errorf("0002_signing_keys is not PostgreSQL's")
	}
}

func TestParseDSN(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		dsn, want string
		wantErr   bool
	}{
		{dsn: "cockroach://root@db.example/talos?sslmode=verify-full", want: `database "talos" on db.example:26257`},
		{dsn: "cockroachdb://root@db.example:26000/talos", want: `database "talos" on db.example:26000`},
		{dsn: "CockroachDB://root:pw@[::1]/talos?max_conns=3", want: `database "talos" on [::1]:26257`},
		{dsn: "postgres://root@db.example/talos", wantErr: true},
		{dsn: "cockroach://root:hunter2@db.example/talos?pool_health_check_period=1m", wantErr: true},
	} {
		cfg, err := cockroach.ParseDSN(tt.dsn)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDSN(%q) error = %v, want error %t", tt.dsn, err, tt.wantErr)
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "parse cockroach dsn: ") {
				t.Errorf("ParseDSN(%q) error = %q, want a cockroach dsn error without the password", tt.dsn, err)
			}
			continue
		}
		if got := cfg.String(); got != tt.want {
			t.Errorf("ParseDSN(%q) = %s, want %s", tt.dsn, got, tt.want)
		}
	}
}

func minimalKey(tenant credential.Tenant, id credential.KeyID) credential.Key {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	return credential.Key{
		Tenant: tenant, Kind: credential.KindIssued, ID: id, ActorID: "user:bob",
		Status: credential.StateActive, Visibility: credential.VisibilitySecret,
		CreateTime: now, UpdateTime: now,
	}
}
