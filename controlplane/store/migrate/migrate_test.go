package migrate_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"modernc.org/sqlite"

	"github.com/talos-project/talos/controlplane/store/migrate"
)

func newTestDB(t *testing.T) *sql.DB {
	t.Helper()
	c, err := sqlite.NewConnector(filepath.Join(t.TempDir(), "m.db") + "?_txlock=immediate")
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func file(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }

func TestLoad(t *testing.T) {
	t.Parallel()
	ms, err := migrate.Load(fstest.MapFS{
		"0010_later.up.sql":    file("CREATE TABLE later (x INT);"),
		"0002_second.up.sql":   file("CREATE TABLE second (x INT);"),
		"0002_second.down.sql": file("DROP TABLE second;"),
		"README.md":            file("not a migration"),
		"0001_first.up.sql":    file("CREATE TABLE first (x INT);"),
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []migrate.Migration{
		{Version: 1, Name: "first", SQL: "CREATE TABLE first (x INT);"},
		{Version: 2, Name: "second", SQL: "CREATE TABLE second (x INT);"},
		{Version: 10, Name: "later", SQL: "CREATE TABLE later (x INT);"},
	}
	if d := cmp.Diff(want, ms); d != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", d)
	}

	for name, fsys := range map[string]fstest.MapFS{
		"duplicate version": {"0001_a.up.sql": file(""), "001_b.up.sql": file("")},
		"no name":           {"0001.up.sql": file("")},
		"no version":        {"init.up.sql": file("")},
		"version zero":      {"0000_zero.up.sql": file("")},
	} {
		if _, err := migrate.Load(fsys); err == nil {
			t.Errorf("Load with %s: no error", name)
		}
	}
}

func TestUp(t *testing.T) {
	t.Parallel()
	for _, opts := range []migrate.Options{{}, {Dollar: true}, {Lock: "SELECT 1"}} {
		ctx := t.Context()
		db := newTestDB(t)
		fsys := fstest.MapFS{"0001_first.up.sql": file("CREATE TABLE first (x INT); CREATE INDEX first_x ON first (x);")}

		if ok, err := migrate.Current(ctx, db, fsys); err != nil || ok {
			t.Errorf("Current of a fresh database = %t, %v; want false", ok, err)
		}
		applied, err := migrate.Up(ctx, db, fsys, opts)
		if err != nil || len(applied) != 1 {
			t.Fatalf("Up = %v, %v; want 1 migration applied", applied, err)
		}
		if ok, err := migrate.Current(ctx, db, fsys); err != nil || !ok {
			t.Errorf("Current after Up = %t, %v; want true", ok, err)
		}
		if applied, err := migrate.Up(ctx, db, fsys, opts); err != nil || len(applied) != 0 {
			t.Errorf("second Up = %v, %v; want nothing applied", applied, err)
		}

		fsys["0002_second.up.sql"] = file("INSERT INTO first (x) VALUES (2);")
		if ok, _ := migrate.Current(ctx, db, fsys); ok {
			t.Errorf("Current with a new migration = true, want false")
		}
		applied, err = migrate.Up(ctx, db, fsys, opts)
		if err != nil || len(applied) != 1 || applied[0].Version != 2 {
			t.Errorf("Up of a new migration = %v, %v; want version 2 applied", applied, err)
		}
		sts, err := migrate.Status(ctx, db, fsys)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		want := []migrate.State{{Version: 1, Name: "first", Applied: true}, {Version: 2, Name: "second", Applied: true}}
		if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
			t.Errorf("Status with %+v mismatch (-want +got):\n%s", opts, d)
		}
	}
}

// TestUp_Failure: a failing migration leaves no trace, the ones before it
// stay applied, and Status says which is pending.
func TestUp_Failure(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	fsys := fstest.MapFS{
		"0001_ok.up.sql":     file("CREATE TABLE ok (x INT);"),
		"0002_broken.up.sql": file("CREATE TABLE half (x INT); SELECT * FROM no_such_table;"),
		"0003_after.up.sql":  file("CREATE TABLE after (x INT);"),
	}
	applied, err := migrate.Up(ctx, db, fsys, migrate.Options{})
	if err == nil || len(applied) != 1 {
		t.Fatalf("Up = %v, %v; want an error after 1 migration", applied, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name IN ('half', 'after')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("tables of the failed and later migrations: %d, %v; want none", n, err)
	}
	sts, err := migrate.Status(ctx, db, fsys)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	want := []migrate.State{{Version: 1, Name: "ok", Applied: true}, {Version: 2, Name: "broken"}, {Version: 3, Name: "after"}}
	if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
		t.Errorf("Status mismatch (-want +got):\n%s", d)
	}
}

// TestStatus_Unknown: a database migrated by a newer release lists the
// migration this release does not know, and still counts as current.
func TestStatus_Unknown(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	newer := fstest.MapFS{"0001_a.up.sql": file("SELECT 1;"), "0002_b.up.sql": file("SELECT 1;")}
	if _, err := migrate.Up(ctx, db, newer, migrate.Options{}); err != nil {
		t.Fatalf("Up: %v", err)
	}
	older := fstest.MapFS{"0001_a.up.sql": file("SELECT 1;")}
	sts, err := migrate.Status(ctx, db, older)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	want := []migrate.State{{Version: 1, Name: "a", Applied: true}, {Version: 2, Name: "b", Applied: true, Unknown: true}}
	if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
		t.Errorf("Status mismatch (-want +got):\n%s", d)
	}
	if ok, err := migrate.Current(ctx, db, older); err != nil || !ok {
		t.Errorf("Current = %t, %v; want true", ok, err)
	}
}

func TestUp_BadFS(t *testing.T) {
	t.Parallel()
	_, err := migrate.Up(t.Context(), newTestDB(t), fstest.MapFS{"1_.up.sql": file("")}, migrate.Options{})
	if err == nil || errors.Is(err, migrate.ErrNotMigrated) {
		t.Errorf("Up with a badly named migration = %v, want a load error", err)
	}
}
