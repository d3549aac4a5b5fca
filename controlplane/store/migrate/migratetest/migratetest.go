// Package migratetest checks a backend's migration commands against a real
// database: read-only status, up, down refused on an irreversible step with
// nothing changed, down then up round-tripping, and force. It expects the
// backend's migrations 0001_init (irreversible) and 0002_signing_keys
// (reversible: drops signing_keys).
package migratetest

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/talos-project/talos/controlplane/store/migrate"
)

// Backend is what Check needs of a store package, over one empty database.
type Backend struct {
	DSN    string
	Up     func(ctx context.Context, dsn string) ([]migrate.Migration, error)
	Down   func(ctx context.Context, dsn string, steps int) ([]migrate.Migration, error)
	Force  func(ctx context.Context, dsn string, version int) error
	Status func(ctx context.Context, dsn string) ([]migrate.State, error)
	// Tables lists the database's tables, by name.
	Tables func(t testing.TB) []string
}

// Check runs the checks on b's database, which must start empty.
func Check(t *testing.T, b Backend) {
	t.Helper()
	ctx := t.Context()
	status := func() string {
		t.Helper()
		sts, err := b.Status(ctx, b.DSN)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		var out []string
		for _, s := range sts {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			out = append(out, s.Name+"="+state)
		}
		return strings.Join(out, " ")
	}
	tables := func() []string {
		t.Helper()
		ts := b.Tables(t)
		slices.Sort(ts)
		return ts
	}
	names := func(ms []migrate.Migration) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return strings.Join(out, " ")
	}

	if got, want := status(), "init=pending signing_keys=pending"; got != want {
		t.Errorf("status of an empty database = %q, want %q", got, want)
	}
	if ts := tables(); len(ts) != 0 {
		t.Fatalf("Status created tables: %v", ts)
	}

	applied, err := b.Up(ctx, b.DSN)
	if err != nil || names(applied) != "init signing_keys" {
		t.Fatalf("Up = %q, %v; want init signing_keys", names(applied), err)
	}
	if applied, err := b.Up(ctx, b.DSN); err != nil || len(applied) != 0 {
		t.Errorf("second Up = %q, %v; want nothing applied", names(applied), err)
	}
	full := tables()
	if !slices.Contains(full, "signing_keys") || !slices.Contains(full, "schema_migrations") {
		t.Fatalf("tables after Up = %v", full)
	}

	// Two steps reach 0001_init, which has no down step: refused, nothing
	// changed.
	_, err = b.Down(ctx, b.DSN, 2)
	if !errors.Is(err, migrate.ErrIrreversible) || !strings.Contains(err.Error(), "0001_init") {
		t.Errorf("Down 2 = %v, want ErrIrreversible naming 0001_init", err)
	}
	if got := tables(); !slices.Equal(got, full) {
		t.Errorf("tables after a refused Down = %v, want %v", got, full)
	}
	if got, want := status(), "init=applied signing_keys=applied"; got != want {
		t.Errorf("status after a refused Down = %q, want %q", got, want)
	}

	rev, err := b.Down(ctx, b.DSN, 1)
	if err != nil || names(rev) != "signing_keys" {
		t.Fatalf("Down 1 = %q, %v; want signing_keys", names(rev), err)
	}
	if got := tables(); slices.Contains(got, "signing_keys") || len(got) != len(full)-1 {
		t.Errorf("tables after Down 1 = %v, want %v without signing_keys", got, full)
	}
	if got, want := status(), "init=applied signing_keys=pending"; got != want {
		t.Errorf("status after Down 1 = %q, want %q", got, want)
	}
	applied, err = b.Up(ctx, b.DSN)
	if err != nil || names(applied) != "signing_keys" {
		t.Fatalf("Up after Down = %q, %v; want signing_keys", names(applied), err)
	}
	if got := tables(); !slices.Equal(got, full) {
		t.Errorf("tables after Down and Up = %v, want %v", got, full)
	}

	// Force moves the record only.
	if err := b.Force(ctx, b.DSN, 1); err != nil {
		t.Fatalf("Force 1: %v", err)
	}
	if got, want := status(), "init=applied signing_keys=pending"; got != want {
		t.Errorf("status after Force 1 = %q, want %q", got, want)
	}
	if got := tables(); !slices.Equal(got, full) {
		t.Errorf("Force changed the tables: %v, want %v", got, full)
	}
	if err := b.Force(ctx, b.DSN, 99); err == nil {
		t.Error("Force 99: no error")
	}
	if err := b.Force(ctx, b.DSN, 2); err != nil {
		t.Fatalf("Force 2: %v", err)
	}
	if got, want := status(), "init=applied signing_keys=applied"; got != want {
		t.Errorf("status after Force 2 = %q, want %q", got, want)
	}
}

// Names runs query on db and returns the first column of its rows, for
// listing tables.
func Names(t testing.TB, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}
