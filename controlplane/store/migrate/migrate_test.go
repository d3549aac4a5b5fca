package migrate_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"modernc.org/sqlite"

	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/migrate/migratetest"
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
		{Version: 2, Name: "second", SQL: "CREATE TABLE second (x INT);", Down: "DROP TABLE second;", HasDown: true},
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

		if ok, err := migrate.Current(ctx, db, fsys, sqliteOpts); err != nil || ok {
			t.Errorf("Current of a fresh database = %t, %v; want false", ok, err)
		}
		applied, err := migrate.Up(ctx, db, fsys, opts)
		if err != nil || len(applied) != 1 {
			t.Fatalf("Up = %v, %v; want 1 migration applied", applied, err)
		}
		if ok, err := migrate.Current(ctx, db, fsys, sqliteOpts); err != nil || !ok {
			t.Errorf("Current after Up = %t, %v; want true", ok, err)
		}
		if applied, err := migrate.Up(ctx, db, fsys, opts); err != nil || len(applied) != 0 {
			t.Errorf("second Up = %v, %v; want nothing applied", applied, err)
		}

		fsys["0002_second.up.sql"] = file("INSERT INTO first (x) VALUES (2);")
		if ok, _ := migrate.Current(ctx, db, fsys, sqliteOpts); ok {
			t.Errorf("Current with a new migration = true, want false")
		}
		applied, err = migrate.Up(ctx, db, fsys, opts)
		if err != nil || len(applied) != 1 || applied[0].Version != 2 {
			t.Errorf("Up of a new migration = %v, %v; want version 2 applied", applied, err)
		}
		sts, err := migrate.Status(ctx, db, fsys, sqliteOpts)
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
	sts, err := migrate.Status(ctx, db, fsys, sqliteOpts)
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
	sts, err := migrate.Status(ctx, db, older, sqliteOpts)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	want := []migrate.State{{Version: 1, Name: "a", Applied: true}, {Version: 2, Name: "b", Applied: true, Unknown: true}}
	if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
		t.Errorf("Status mismatch (-want +got):\n%s", d)
	}
	if ok, err := migrate.Current(ctx, db, older, sqliteOpts); err != nil || !ok {
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

// sqliteOpts reads SQLite's "no such table" as an empty schema_migrations.
var sqliteOpts = migrate.Options{Missing: func(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table: schema_migrations")
}}

func tables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	return migratetest.Names(t, db, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
}

// TestStatus_ReadOnly: Status and Current on a fresh database report all
// pending and create nothing, not even schema_migrations; without Missing
// the missing table is an error, not a guess.
func TestStatus_ReadOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	fsys := fstest.MapFS{"0001_a.up.sql": file("CREATE TABLE a (x INT);")}
	sts, err := migrate.Status(ctx, db, fsys, sqliteOpts)
	if err != nil || len(sts) != 1 || sts[0].Applied {
		t.Fatalf("Status = %+v, %v; want 1 pending", sts, err)
	}
	if ok, err := migrate.Current(ctx, db, fsys, sqliteOpts); err != nil || ok {
		t.Errorf("Current = %t, %v; want false", ok, err)
	}
	if got := tables(t, db); len(got) != 0 {
		t.Errorf("tables after Status and Current = %v, want none", got)
	}
	if _, err := migrate.Status(ctx, db, fsys, migrate.Options{}); err == nil {
		t.Error("Status without Missing on a database without schema_migrations: no error")
	}
}

func TestLoad_Down(t *testing.T) {
	t.Parallel()
	ms, err := migrate.Load(fstest.MapFS{
		"0001_a.up.sql":   file("CREATE TABLE a (x INT);"),
		"0002_b.up.sql":   file("CREATE TABLE b (x INT);"),
		"0002_b.down.sql": file("DROP TABLE b;"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []migrate.Migration{
		{Version: 1, Name: "a", SQL: "CREATE TABLE a (x INT);"},
		{Version: 2, Name: "b", SQL: "CREATE TABLE b (x INT);", Down: "DROP TABLE b;", HasDown: true},
	}
	if d := cmp.Diff(want, ms); d != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", d)
	}
	if _, err := migrate.Load(fstest.MapFS{"0001_a.up.sql": file(""), "0001_typo.down.sql": file("")}); err == nil {
		t.Error("Load with a down file without its up file: no error")
	}
}

func downFS() fstest.MapFS {
	return fstest.MapFS{
		"0001_a.up.sql":   file("CREATE TABLE a (x INT);"),
		"0002_b.up.sql":   file("CREATE TABLE b (x INT);"),
		"0002_b.down.sql": file("DROP TABLE b;"),
		"0003_c.up.sql":   file("CREATE TABLE c (x INT);"),
		"0003_c.down.sql": file("DROP TABLE c;"),
	}
}

func applied(t *testing.T, db *sql.DB, fsys fstest.MapFS) []int {
	t.Helper()
	sts, err := migrate.Status(t.Context(), db, fsys, sqliteOpts)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, s := range sts {
		if s.Applied {
			out = append(out, s.Version)
		}
	}
	return out
}

// TestDown: down then up round-trips; a down over an irreversible
// migration is refused before anything changes.
func TestDown(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	fsys := downFS()
	if _, err := migrate.Up(ctx, db, fsys, sqliteOpts); err != nil {
		t.Fatal(err)
	}
	// Three steps include 0001, which has no down: nothing may change.
	_, err := migrate.Down(ctx, db, fsys, 3, sqliteOpts)
	if !errors.Is(err, migrate.ErrIrreversible) || !strings.Contains(err.Error(), "0001_a") {
		t.Errorf("Down 3 = %v, want ErrIrreversible naming 0001_a", err)
	}
	if d := cmp.Diff([]string{"a", "b", "c", "schema_migrations"}, tables(t, db)); d != "" {
		t.Errorf("tables after a refused Down (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]int{1, 2, 3}, applied(t, db, fsys)); d != "" {
		t.Errorf("applied after a refused Down (-want +got):\n%s", d)
	}

	rev, err := migrate.Down(ctx, db, fsys, 2, sqliteOpts)
	if err != nil || len(rev) != 2 || rev[0].Version != 3 || rev[1].Version != 2 {
		t.Fatalf("Down 2 = %v, %v; want 3 then 2", rev, err)
	}
	if d := cmp.Diff([]string{"a", "schema_migrations"}, tables(t, db)); d != "" {
		t.Errorf("tables after Down 2 (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]int{1}, applied(t, db, fsys)); d != "" {
		t.Errorf("applied after Down 2 (-want +got):\n%s", d)
	}
	if _, err := migrate.Down(ctx, db, fsys, 2, sqliteOpts); err == nil {
		t.Error("Down 2 with one applied: no error")
	}
	if _, err := migrate.Down(ctx, db, fsys, 0, sqliteOpts); err == nil {
		t.Error("Down 0: no error")
	}
	ups, err := migrate.Up(ctx, db, fsys, sqliteOpts)
	if err != nil || len(ups) != 2 {
		t.Fatalf("Up after Down = %v, %v; want 2 applied", ups, err)
	}
	if d := cmp.Diff([]string{"a", "b", "c", "schema_migrations"}, tables(t, db)); d != "" {
		t.Errorf("tables after Up again (-want +got):\n%s", d)
	}

	// A migration applied by a newer release cannot be rolled back here.
	older := downFS()
	delete(older, "0003_c.up.sql")
	delete(older, "0003_c.down.sql")
	if _, err := migrate.Down(ctx, db, older, 1, sqliteOpts); err == nil || !strings.Contains(err.Error(), "newer release") {
		t.Errorf("Down of an unknown migration = %v, want a newer-release error", err)
	}
	if d := cmp.Diff([]int{1, 2, 3}, applied(t, db, fsys)); d != "" {
		t.Errorf("applied after a refused Down (-want +got):\n%s", d)
	}
}

// TestForce: force records exactly the migrations up to a version, runs
// none, and refuses a version that does not exist.
func TestForce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	fsys := downFS()
	if err := migrate.Force(ctx, db, fsys, 2, sqliteOpts); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int{1, 2}, applied(t, db, fsys)); d != "" {
		t.Errorf("applied after Force 2 (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"schema_migrations"}, tables(t, db)); d != "" {
		t.Errorf("Force ran a migration (-want +got):\n%s", d)
	}
	if err := migrate.Force(ctx, db, fsys, 7, sqliteOpts); err == nil {
		t.Error("Force 7: no error")
	}
	if err := migrate.Force(ctx, db, fsys, 3, sqliteOpts); err != nil {
		t.Fatal(err)
	}
	if err := migrate.Force(ctx, db, fsys, 1, sqliteOpts); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int{1}, applied(t, db, fsys)); d != "" {
		t.Errorf("applied after Force 1 (-want +got):\n%s", d)
	}
	if err := migrate.Force(ctx, db, fsys, 0, sqliteOpts); err != nil {
		t.Fatal(err)
	}
	if got := applied(t, db, fsys); len(got) != 0 {
		t.Errorf("applied after Force 0 = %v, want none", got)
	}
}
