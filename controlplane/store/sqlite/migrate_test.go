package sqlite_test

import (
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	modernc "modernc.org/sqlite"

	"github.com/talos-project/talos/controlplane/store/migrate/migratetest"
	"github.com/talos-project/talos/controlplane/store/sqlite"
)

// TestMigrateCommands: status reads only (a missing file is refused, not
// created), up, down (refused on 0001_init with nothing changed, else
// reversed and reapplied) and force.
func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "talos.db")
	_, err := sqlite.MigrationStatus(t.Context(), "sqlite://"+path)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("MigrationStatus of a missing file = %v, want a does-not-exist error", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("MigrationStatus created %s: %v", path, err)
	}
	// An empty file is an empty database.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	migratetest.Check(t, migratetest.Backend{
		DSN: "sqlite://" + path, Up: sqlite.MigrateUp, Down: sqlite.MigrateDown,
		Force: sqlite.MigrateForce, Status: sqlite.MigrationStatus,
		Tables: func(t testing.TB) []string { return sqliteTables(t, path) },
	})
}

func sqliteTables(t testing.TB, path string) []string {
	t.Helper()
	c, err := modernc.NewConnector("file:" + path + "?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	return migratetest.Names(t, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1`)
}

// TestOpen_MissingDirectory: the error names the missing directory instead
// of SQLite's "unable to open database file".
func TestOpen_MissingDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "no", "such")
	dsn := "sqlite://" + filepath.Join(dir, "talos.db")
	_, err := sqlite.Open(t.Context(), dsn, sqlite.Options{AutoMigrate: true})
	if err == nil || !strings.Contains(err.Error(), "directory "+dir+" does not exist") {
		t.Errorf("Open = %v, want an error naming the missing directory", err)
	}
	if _, err := sqlite.MigrateUp(t.Context(), dsn); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("MigrateUp = %v, want an error naming the missing directory", err)
	}
}

// TestOpen_ReadOnlyFS: on a read-only file system the error says so. It
// mounts a read-only tmpfs, so it runs only as root where mount works.
func TestOpen_ReadOnlyFS(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a read-only tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount a read-only tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	_, err := sqlite.Open(t.Context(), "sqlite://"+filepath.Join(dir, "talos.db"), sqlite.Options{AutoMigrate: true})
	if err == nil || !strings.Contains(err.Error(), "is read-only") {
		t.Errorf("Open on a read-only file system = %v, want an error saying so", err)
	}
}
