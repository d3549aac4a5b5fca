package sqlite_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	modernc "modernc.org/sqlite"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/controlplane/store/storetest"
	"github.com/talos-project/talos/pkg/credential"
)

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return newTestStore(t, sqlite.Options{}) })
}

func TestStore_Memory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.Context(), ":memory:", sqlite.Options{AutoMigrate: true})
		if err != nil {
			t.Fatalf("Open(:memory:): %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// newTestStore opens a migrated database in a temp dir.
func newTestStore(t *testing.T, opts sqlite.Options) store.Store {
	t.Helper()
	opts.AutoMigrate = true
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "talos.db"), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestOpen_LockedDatabase: while another connection holds the write lock, a
// write fails with ErrUnavailable once the busy timeout passes, instead of
// hanging, and reads still answer (WAL).
func TestOpen_LockedDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "talos.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{AutoMigrate: true, BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	k := credential.Key{Tenant: credential.DefaultTenant, Kind: credential.KindIssued, ID: "k", Status: credential.StateActive, Visibility: credential.VisibilitySecret}
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, k) }); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}

	other := sql.OpenDB(mustConnector(t, path))
	t.Cleanup(func() { _ = other.Close() })
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatalf("Conn: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	t.Cleanup(func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") })

	// The watchdog turns a hang into a failure; the calls must return long
	// before it fires.
	done := make(chan struct{})
	watchdog := time.AfterFunc(30*time.Second, func() { close(done) })
	defer watchdog.Stop()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"InTx", func() error {
			return s.InTx(ctx, func(tx store.Tx) error { return tx.DeleteKey(ctx, k.Tenant, k.Kind, k.ID) })
		}},
		{"TouchLastUsed", func() error {
			return s.TouchLastUsed(ctx, k.Tenant, k.Kind, []credential.KeyID{k.ID}, time.Now())
		}},
	} {
		err := c.call()
		select {
		case <-done:
			t.Fatalf("%s returned only after 30s", c.name)
		default:
		}
		if !errors.Is(err, credential.ErrUnavailable) {
			t.Errorf("%s on a locked database: error = %v, want one wrapping ErrUnavailable", c.name, err)
		}
	}
	if _, err := s.GetKey(ctx, k.Tenant, k.Kind, k.ID); err != nil {
		t.Errorf("GetKey on a locked database: %v", err)
	}
}

// mustConnector returns a bare connector to path, without this package's
// settings.
func mustConnector(t *testing.T, path string) driver.Connector {
	t.Helper()
	c, err := modernc.NewConnector(path)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	return c
}

func TestOpen_NotMigrated(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "talos.db")
	_, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if !errors.Is(err, migrate.ErrNotMigrated) {
		t.Fatalf("Open of a fresh database: error = %v, want one wrapping migrate.ErrNotMigrated", err)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "talos.db")
	if _, err := sqlite.MigrationStatus(ctx, dsn); err == nil {
		t.Fatal("MigrationStatus of a missing file: no error")
	}
	if _, err := os.Create(strings.TrimPrefix(dsn, "sqlite://")); err != nil {
		t.Fatal(err)
	}

	sts, err := sqlite.MigrationStatus(ctx, dsn)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if d := cmp.Diff([]migrate.State{{Version: 1, Name: "init"}, {Version: 2, Name: "signing_keys"}}, sts); d != "" {
		t.Errorf("status before Migrate mismatch (-want +got):\n%s", d)
	}

	for range 2 { // the second run has nothing to do
		if err := sqlite.Migrate(ctx, dsn); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	sts, err = sqlite.MigrationStatus(ctx, dsn)
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

	s, err := sqlite.Open(ctx, dsn, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after Migrate: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestParseDSN(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		dsn, want string
		wantErr   bool
	}{
		{dsn: "talos.db", want: "talos.db"},
		{dsn: "/var/lib/talos/talos.db", want: "/var/lib/talos/talos.db"},
		{dsn: "sqlite:///var/lib/talos/talos.db", want: "/var/lib/talos/talos.db"},
		{dsn: "sqlite://talos.db", want: "talos.db"},
		{dsn: "sqlite3:///tmp/t.db", want: "/tmp/t.db"},
		{dsn: ":memory:", want: ":memory:"},
		{dsn: "sqlite://:memory:", want: ":memory:"},
		{dsn: "", wantErr: true},
		{dsn: "sqlite://", wantErr: true},
		{dsn: "postgres://localhost/talos", wantErr: true},
		{dsn: "sqlite://talos.db?_fk=true", wantErr: true},
		{dsn: "file:talos.db", wantErr: true},
	} {
		got, err := sqlite.ParseDSN(tt.dsn)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseDSN(%q) = %q, %v; want %q, error %t", tt.dsn, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestFailing runs the fault-injecting wrapper over a real store.
func TestFailing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	fault := fmt.Errorf("injected: %w", credential.ErrUnavailable)
	f := storetest.Failing(newTestStore(t, sqlite.Options{}), fault)
	ran := false
	err := f.InTx(ctx, func(store.Tx) error { ran = true; return nil })
	if !errors.Is(err, credential.ErrUnavailable) || ran {
		t.Errorf("InTx while failing = %v (fn ran: %t), want the fault and fn not run", err, ran)
	}
	if _, err := f.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "k"); !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("GetKey while failing = %v, want the fault", err)
	}
	f.SetErr(nil)
	if _, err := f.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "k"); !errors.Is(err, credential.ErrNotFound) {
		t.Errorf("GetKey after SetErr(nil) = %v, want the store's ErrNotFound", err)
	}
}
