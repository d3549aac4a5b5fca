package postgres_test

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
	"github.com/talos-project/talos/controlplane/store/storetest"
	"github.com/talos-project/talos/pkg/credential"
)

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newTestStore(t, "")
		return s
	})
}

// TestStore_Serializable runs the suite with every transaction SERIALIZABLE,
// where concurrent read-check-write transactions fail with real
// serialization failures (40001) that the store must retry.
func TestStore_Serializable(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newTestStore(t, "default_transaction_isolation=serializable")
		return s
	})
}

// newTestStore opens a migrated store in a schema of its own, with the
// extra DSN query params, and closes it when t ends.
func newTestStore(t *testing.T, params string) (*sqlstore.Store, *pgtest.Schema) {
	t.Helper()
	sch := pgtest.NewSchema(t)
	dsn := sch.DSN
	if params != "" {
		dsn += "&" + params
	}
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{AutoMigrate: true})
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

// TestInTx_RetriesSerializationFailure: a transaction that fails with a
// real serialization failure is run again and commits.
func TestInTx_RetriesSerializationFailure(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, sch := newTestStore(t, "default_transaction_isolation=serializable")
	tenant := credential.Tenant("t")
	k := minimalKey(tenant, "contended")
	other := minimalKey(tenant, "other")
	mustCreate(t, s, k, other)

	var attempts atomic.Int32
	err := s.InTx(ctx, func(tx store.Tx) error {
		// The first read fixes the transaction's snapshot.
		if _, err := tx.GetKey(ctx, tenant, other.Kind, other.ID); err != nil {
			return err
		}
		if attempts.Add(1) == 1 {
			// Another transaction changes the key after that snapshot, so
			// locking it now cannot be serialized.
			_, err := sch.Admin.ExecContext(ctx, `UPDATE `+sch.Name+`.api_keys SET name = 'changed' WHERE key_id = $1`, string(k.ID))
			if err != nil {
				t.Fatalf("concurrent update: %v", err)
			}
		}
		cur, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
		if err != nil {
			return err
		}
		cur.Name += " and revoked"
		cur.Status = credential.StateRevoked
		return tx.UpdateKey(ctx, cur)
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("fn ran %d times, want 2 (one serialization failure, then a commit)", n)
	}
	got, err := s.GetKey(ctx, tenant, k.Kind, k.ID)
	if err != nil || got.Name != "changed and revoked" || got.Status != credential.StateRevoked {
		t.Errorf("GetKey = %q, %v, %v; want the retry's update over the concurrent one", got.Name, got.Status, err)
	}
}

// TestInTx_RetryableErrors: a transaction whose function fails with a
// retryable code is retried, a bounded number of times; one that keeps
// failing returns fn's error unchanged, and other errors are not retried.
func TestInTx_RetryableErrors(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, "")
	for _, tt := range []struct {
		code      string
		failures  int
		wantRuns  int
		wantError bool
	}{
		{code: "40001", failures: 1, wantRuns: 2},
		{code: "40P01", failures: 3, wantRuns: 4},
		{code: "40001", failures: 100, wantRuns: sqlstore.RetryAttempts, wantError: true},
		{code: "23505", failures: 1, wantRuns: 1, wantError: true},
	} {
		runs := 0
		fault := &pgconn.PgError{Code: tt.code}
		err := s.InTx(t.Context(), func(tx store.Tx) error {
			runs++
			if runs <= tt.failures {
				return fault
			}
			return nil
		})
		if runs != tt.wantRuns || (err != nil) != tt.wantError || (err != nil && err != error(fault)) {
			t.Errorf("%s %d times: fn ran %d times, InTx = %v; want %d runs, error %t (fn's)", tt.code, tt.failures, runs, err, tt.wantRuns, tt.wantError)
		}
	}
}

func TestOpen_NotMigrated(t *testing.T) {
	t.Parallel()
	sch := pgtest.NewSchema(t)
	_, err := postgres.Open(t.Context(), sch.DSN, postgres.Options{})
	if !errors.Is(err, migrate.ErrNotMigrated) {
		t.Fatalf("Open of an empty schema: error = %v, want one wrapping migrate.ErrNotMigrated", err)
	}
}

// TestOpen_Schema: Options.Schema chooses the schema, over the DSN's.
func TestOpen_Schema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := pgtest.NewSchema(t), pgtest.NewSchema(t)
	s, err := postgres.Open(ctx, a.DSN, postgres.Options{AutoMigrate: true, Schema: b.Name})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, c := range []struct {
		sch  *pgtest.Schema
		want bool
	}{{a, false}, {b, true}} {
		var ok bool
		err := c.sch.Admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'api_keys')`, c.sch.Name).Scan(&ok)
		if err != nil || ok != c.want {
			t.Errorf("api_keys in schema %s: %t, %v; want %t", c.sch.Name, ok, err, c.want)
		}
	}
}

func TestOpen_Unreachable(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: the kernel refuses the connection at once.
	_, err := postgres.Open(t.Context(), "postgres://talos:secret-password@127.0.0.1:1/talos?sslmode=disable", postgres.Options{})
	if !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Open of an unreachable database: error = %v, want one wrapping ErrUnavailable", err)
	}
	var pgErr *pgconn.ConnectError
	if errors.As(err, &pgErr) {
		t.Errorf("Open of an unreachable database: error %v unwraps to a pgx error", err)
	}
	assertNoSecret(t, err, "secret-password")
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewSchema(t).DSN

	sts, err := postgres.MigrationStatus(ctx, dsn)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if d := cmp.Diff([]migrate.State{{Version: 1, Name: "init"}, {Version: 2, Name: "signing_keys"}}, sts); d != "" {
		t.Errorf("status before Migrate mismatch (-want +got):\n%s", d)
	}
	for range 2 { // the second run has nothing to do
		if err := postgres.Migrate(ctx, dsn); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	sts, err = postgres.MigrationStatus(ctx, dsn)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	want := []migrate.State{{Version: 1, Name: "init", Applied: true}, {Version: 2, Name: "signing_keys", Applied: true}}
	if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
		t.Errorf("status after Migrate mismatch (-want +got):\n%s", d)
	}
	if len(sts) > 0 && (sts[0].AppliedAt.IsZero() || sts[0].AppliedAt.Location() != time.UTC) {
		t.Errorf("AppliedAt = %v, want a UTC time", sts[0].AppliedAt)
	}
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatalf("Open after Migrate: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestMigrate_Concurrent: replicas that migrate one fresh database at once
// all succeed, and each migration is applied once.
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
			if i%2 == 0 {
				errs[i] = postgres.Migrate(ctx, sch.DSN)
				return
			}
			s, err := postgres.Open(ctx, sch.DSN, postgres.Options{AutoMigrate: true})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
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

// TestDialect_Classify checks the SQLSTATE table.
func TestDialect_Classify(t *testing.T) {
	t.Parallel()
	classify := postgres.Dialect().Classify
	for _, tt := range []struct {
		code string
		want error
	}{
		{"23505", credential.ErrConflict},
		{"40001", credential.ErrUnavailable},
		{"40P01", credential.ErrUnavailable},
		{"55P03", credential.ErrDeadlineExceeded},
		{"57014", credential.ErrDeadlineExceeded},
		{"08006", credential.ErrUnavailable},
		{"08001", credential.ErrUnavailable},
		{"53300", credential.ErrUnavailable},
		{"53100", credential.ErrUnavailable},
		{"57P01", credential.ErrUnavailable},
		{"57P02", credential.ErrUnavailable},
		{"57P03", credential.ErrUnavailable},
		{"25006", credential.ErrUnavailable},
		{"28P01", credential.ErrUnavailable},
		{"22021", credential.ErrInvalidArgument},
		{"23503", nil}, // foreign key: a bug, not a state of the database
		{"42P01", nil}, // undefined table: a bug
		{"", nil},
	} {
		if got := classify(&pgconn.PgError{Code: tt.code}); got != tt.want {
			t.Errorf("Classify(SQLSTATE %q) = %v, want %v", tt.code, got, tt.want)
		}
	}
	if got := classify(errors.New("not a database error")); got != nil {
		t.Errorf("Classify(other error) = %v, want nil", got)
	}
	retryable := postgres.Dialect().Retryable
	for code, want := range map[string]bool{"40001": true, "40P01": true, "55P03": false, "23505": false} {
		if got := retryable(&pgconn.PgError{Code: code}); got != want {
			t.Errorf("Retryable(SQLSTATE %s) = %t, want %t", code, got, want)
		}
	}
}

// assertNoSecret fails if err's message holds secret.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error %q reveals the password", err)
	}
}

// minimalKey returns a key with only the required fields set.
func minimalKey(tenant credential.Tenant, id credential.KeyID) credential.Key {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	return credential.Key{
		Tenant: tenant, Kind: credential.KindIssued, ID: id, ActorID: "user:bob",
		Status: credential.StateActive, Visibility: credential.VisibilitySecret,
		CreateTime: now, UpdateTime: now,
	}
}

// mustCreate creates keys in one transaction.
func mustCreate(t *testing.T, s store.Store, keys ...credential.Key) {
	t.Helper()
	err := s.InTx(t.Context(), func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.CreateKey(t.Context(), k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create keys: %v", err)
	}
}

// TestStore_BatchRoundTrip: unicode, 4 KB metadata and a 1000-key batch
// come back byte for byte.
func TestStore_BatchRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, "")
	pgtest.CheckBatchRoundTrip(t, s)
}

// TestCreateKey_NULByte: PostgreSQL text cannot hold a NUL byte, which
// SQLite stores; the store reports it as the caller's invalid argument.
func TestCreateKey_NULByte(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, "")
	k := minimalKey("t", "nul")
	k.Name = "before\x00after"
	err := s.InTx(t.Context(), func(tx store.Tx) error { return tx.CreateKey(t.Context(), k) })
	if !errors.Is(err, credential.ErrInvalidArgument) {
		t.Errorf("CreateKey of a name with a NUL byte: error = %v, want one wrapping ErrInvalidArgument", err)
	}
}

// TestStore_EventCommitOrder: the advisory lock makes a transaction that
// appends an event wait for an earlier one.
func TestStore_EventCommitOrder(t *testing.T) {
	t.Parallel()
	s, sch := newTestStore(t, "")
	pgtest.CheckEventCommitOrder(t, s, sch)
}

// TestOpen_ReadOnly: a read-only database, such as a hot standby serving as
// read replica, opens without writing and serves reads; writes fail with
// ErrUnavailable.
func TestOpen_ReadOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	primary, sch := newTestStore(t, "")
	k := minimalKey("t", "k")
	mustCreate(t, primary, k)

	replica, err := postgres.Open(ctx, sch.DSN+"&default_transaction_read_only=on", postgres.Options{})
	if err != nil {
		t.Fatalf("Open of a read-only database: %v", err)
	}
	t.Cleanup(func() { _ = replica.Close() })
	if _, err := replica.GetKey(ctx, k.Tenant, k.Kind, k.ID); err != nil {
		t.Errorf("GetKey on the read-only database: %v", err)
	}
	err = replica.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, minimalKey("t", "new")) })
	if !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("CreateKey on the read-only database: error = %v, want one wrapping ErrUnavailable", err)
	}
}
