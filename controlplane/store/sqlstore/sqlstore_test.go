package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	modernc "modernc.org/sqlite"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
	"github.com/talos-project/talos/controlplane/store/storetest"
	"github.com/talos-project/talos/pkg/credential"
)

// newTestStore returns a store over a migrated SQLite database in a temp dir,
// driven by d: these tests vary the dialect, not the database.
func newTestStore(t *testing.T, d sqlstore.Dialect) *sqlstore.Store {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "talos.db")
	if err := sqlite.Migrate(ctx, path); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	c, err := modernc.NewConnector(path + "?_txlock=immediate&_busy_timeout=5000&_journal_mode=WAL")
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	s, err := sqlstore.New(ctx, db, d)
	if err != nil {
		_ = db.Close()
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStore_DollarPlaceholders runs the suite with every query rebound to
// $1-style parameters (SQLite accepts them as numbered parameters), which is
// what PostgreSQL and CockroachDB will run.
func TestStore_DollarPlaceholders(t *testing.T) {
	t.Parallel()
	d := sqlite.Dialect()
	d.Placeholder = sqlstore.Dollar
	storetest.Run(t, func(t *testing.T) store.Store { return newTestStore(t, d) })
}

func testKey(id credential.KeyID) credential.Key {
	return credential.Key{
		Tenant: credential.DefaultTenant, Kind: credential.KindIssued, ID: id,
		Status: credential.StateActive, Visibility: credential.VisibilitySecret,
	}
}

// TestInTx_ExecTx: a retrying ExecTx sees the driver's error, so it can
// recognise a retryable code, and reruns fn; when it gives up, InTx still
// returns fn's classified error, which does not unwrap to a driver type.
func TestInTx_ExecTx(t *testing.T) {
	t.Parallel()
	var seen []error
	d := sqlite.Dialect()
	d.ExecTx = func(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
		for attempt := 0; ; attempt++ {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			err = fn(tx)
			if err == nil {
				return tx.Commit()
			}
			_ = tx.Rollback()
			seen = append(seen, err)
			var se *modernc.Error
			if !errors.As(err, &se) || attempt == 2 {
				return err
			}
		}
	}
	s := newTestStore(t, d)
	ctx := t.Context()
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, testKey("taken")) }); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}

	attempts := 0
	err := s.InTx(ctx, func(tx store.Tx) error {
		attempts++
		id := credential.KeyID("taken")
		if attempts == 2 {
			id = "free"
		}
		return tx.CreateKey(ctx, testKey(id))
	})
	if err != nil || attempts != 2 {
		t.Fatalf("InTx = %v after %d attempts, want success on attempt 2", err, attempts)
	}
	var se *modernc.Error
	if len(seen) != 1 || !errors.As(seen[0], &se) {
		t.Errorf("ExecTx saw %v, want one driver error", seen)
	}
	if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "free"); err != nil {
		t.Errorf("GetKey of the retried create: %v", err)
	}

	seen = nil
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, testKey("taken")) })
	if !errors.Is(err, credential.ErrConflict) || errors.As(err, &se) {
		t.Errorf("InTx after ExecTx gave up = %v, want ErrConflict without the driver error", err)
	}
	if len(seen) != 3 {
		t.Errorf("ExecTx ran fn %d times, want 3", len(seen))
	}

	errBoom := errors.New("boom")
	if err := s.InTx(ctx, func(store.Tx) error { return errBoom }); err != errBoom { // identity: unchanged
		t.Errorf("InTx = %v, want fn's error unchanged", err)
	}
}

// TestAppendEvent_LockEvents: the dialect's event lock runs in the
// transaction before the event is written, and its failure stops the write.
func TestAppendEvent_LockEvents(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, lock string
		wantEvents int
	}{
		{"lock succeeds", "SELECT 1", 1},
		{"lock fails", "SELECT * FROM no_such_lock_table", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := sqlite.Dialect()
			d.LockEvents = tt.lock
			s := newTestStore(t, d)
			ctx := t.Context()
			err := s.InTx(ctx, func(tx store.Tx) error {
				return tx.AppendEvent(ctx, credential.Event{Tenant: credential.DefaultTenant, Kind: credential.KindIssued, KeyID: "k", Type: credential.EventCreated})
			})
			if (err == nil) != (tt.wantEvents == 1) {
				t.Errorf("InTx = %v", err)
			}
			evs, err := s.EventsSince(ctx, 0, 10)
			if err != nil || len(evs) != tt.wantEvents {
				t.Errorf("EventsSince = %d events, %v; want %d", len(evs), err, tt.wantEvents)
			}
		})
	}
}

// TestInTx_Panic: a panic in fn rolls the transaction back, releases its
// connection and reaches the caller.
func TestInTx_Panic(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, sqlite.Dialect())
	ctx := t.Context()
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("InTx swallowed fn's panic")
			}
		}()
		_ = s.InTx(ctx, func(tx store.Tx) error {
			if err := tx.CreateKey(ctx, testKey("ghost")); err != nil {
				return err
			}
			panic("fn panicked")
		})
	}()
	// A leaked transaction would hold SQLite's write lock and fail this.
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, testKey("real")) }); err != nil {
		t.Fatalf("InTx after a panic: %v", err)
	}
	if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "ghost"); !errors.Is(err, credential.ErrNotFound) {
		t.Errorf("GetKey of the key created before the panic = %v, want ErrNotFound", err)
	}
}

var errFlaky = errors.New("serialization failure (test)")

// TestInTx_Retryable: with Dialect.Retryable, a transaction failing with a
// retryable error is run again until it succeeds, a non-retryable error is
// returned at once, and a retryable one that never clears stops after
// RetryAttempts.
func TestInTx_Retryable(t *testing.T) {
	t.Parallel()
	d := sqlite.Dialect()
	d.Retryable = func(err error) bool { return errors.Is(err, errFlaky) }
	s := newTestStore(t, d)
	ctx := t.Context()

	runs := 0
	err := s.InTx(ctx, func(tx store.Tx) error {
		runs++
		if runs < 3 {
			return errFlaky
		}
		return tx.CreateKey(ctx, testKey("retried"))
	})
	if err != nil || runs != 3 {
		t.Fatalf("InTx = %v after %d runs, want success after 3", err, runs)
	}
	if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "retried"); err != nil {
		t.Errorf("the retried write is missing: %v", err)
	}

	runs = 0
	err = s.InTx(ctx, func(tx store.Tx) error { runs++; return tx.CreateKey(ctx, testKey("retried")) })
	if !errors.Is(err, credential.ErrConflict) || runs != 1 {
		t.Errorf("non-retryable: InTx = %v after %d runs, want ErrConflict after 1", err, runs)
	}

	runs = 0
	err = s.InTx(ctx, func(store.Tx) error { runs++; return errFlaky })
	if !errors.Is(err, errFlaky) || runs != sqlstore.RetryAttempts {
		t.Errorf("always retryable: InTx = %v after %d runs, want errFlaky after %d", err, runs, sqlstore.RetryAttempts)
	}
}
