package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/credential"
)

// TestBackupRestore: a backup taken with writes still in the WAL holds them;
// neither Backup nor Restore replaces a file without overwrite; a failing
// check leaves the target and its directory untouched; Restore removes a
// stale WAL of the database it replaces.
func TestBackupRestore(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "live.db")
	s, err := sqlite.Open(ctx, dsn, sqlite.Options{AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := credential.Key{Tenant: credential.DefaultTenant, Kind: credential.KindIssued, ID: "k1", Status: credential.StateActive,
		Visibility: credential.VisibilitySecret, Prefix: "talos", Version: "v2", SecretHash: make([]byte, 32)}
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, k) }); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b.db")
	if err := sqlite.Backup(ctx, dsn, out, false); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.Backup(ctx, dsn, out, false); !errors.Is(err, sqlite.ErrExists) {
		t.Fatalf("second backup: %v, want ErrExists", err)
	}
	if err := sqlite.Backup(ctx, "sqlite://"+filepath.Join(dir, "missing.db"), filepath.Join(dir, "x.db"), false); err == nil {
		t.Fatal("backup of a missing database succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backup of a missing database created it: %v", err)
	}

	target := t.TempDir()
	tdsn := "sqlite://" + filepath.Join(target, "talos.db")
	found := func(ctx context.Context, st store.Store) error {
		_, err := st.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "k1")
		return err
	}
	refuse := errors.New("refused")
	if err := sqlite.Restore(ctx, out, tdsn, false, func(context.Context, store.Store) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("restore with a failing check: %v", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("a refused restore left %v", ents)
	}
	if err := sqlite.Restore(ctx, out, tdsn, false, found); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.Restore(ctx, out, tdsn, false, found); !errors.Is(err, sqlite.ErrExists) {
		t.Fatalf("restore over a database: %v, want ErrExists", err)
	}
	// A stale WAL beside the replaced database must not be replayed into it.
	if err := os.WriteFile(filepath.Join(target, "talos.db-wal"), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.Restore(ctx, out, tdsn, true, found); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "talos.db-wal")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale WAL is still there: %v", err)
	}
	r, err := sqlite.Open(ctx, tdsn, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := found(ctx, r); err != nil {
		t.Fatalf("restored database: %v", err)
	}
}

// BenchmarkBackup is VACUUM INTO of a database of benchKeys keys, while
// it is open.
func BenchmarkBackup(b *testing.B) {
	db := filepath.Join(b.TempDir(), "bench.db")
	newBenchStoreAt(b, db)
	out := filepath.Join(b.TempDir(), "b.db")
	for b.Loop() {
		if err := sqlite.Backup(b.Context(), db, out, true); err != nil {
			b.Fatal(err)
		}
	}
	if fi, err := os.Stat(out); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
	}
}
