package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"time"
)

// ErrRefused reports a Down or Force refused before anything changed: an
// irreversible or unknown migration, more steps than applied, a version
// that does not exist.
var ErrRefused = errors.New("refused; nothing was changed")

// ErrIrreversible reports a migration without a down step; it wraps
// ErrRefused.
var ErrIrreversible = fmt.Errorf("migration is irreversible (%w)", ErrRefused)

// Down reverses the last steps applied migrations, newest first, each in its
// own transaction together with the removal of its schema_migrations row, and
// returns those it reversed. Before changing anything it checks that every
// one of them is known to fsys and has a down step; otherwise it returns an
// error naming the first that cannot be reversed (wrapping ErrIrreversible
// when it has no down step). On a later error, the migrations reversed before
// it stay reversed.
func Down(ctx context.Context, db *sql.DB, fsys fs.FS, steps int, opts Options) ([]Migration, error) {
	if steps < 1 {
		return nil, fmt.Errorf("roll back: steps must be at least 1 (got %d): %w", steps, ErrRefused)
	}
	ms, err := Load(fsys)
	if err != nil {
		return nil, err
	}
	applied, err := appliedMigrations(ctx, db, opts)
	if err != nil {
		return nil, err
	}
	if steps > len(applied) {
		return nil, fmt.Errorf("roll back %d migrations: only %d applied: %w", steps, len(applied), ErrRefused)
	}
	known := make(map[int]Migration, len(ms))
	for _, m := range ms {
		known[m.Version] = m
	}
	versions := slices.Sorted(maps.Keys(applied))
	slices.Reverse(versions)
	var plan []Migration
	for _, v := range versions[:steps] {
		m, ok := known[v]
		switch {
		case !ok:
			return nil, fmt.Errorf("roll back migration %04d_%s: it was applied by a newer release, which must roll it back: %w",
				v, applied[v].Name, ErrRefused)
		case !m.HasDown:
			return nil, fmt.Errorf("roll back migration %04d_%s: it has no down step, so %w; restore a backup taken before it instead",
				v, m.Name, ErrIrreversible)
		}
		plan = append(plan, m)
	}
	var done []Migration
	for _, m := range plan {
		ran, err := reverse(ctx, db, m, opts)
		if err != nil {
			return done, fmt.Errorf("roll back migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if ran {
			done = append(done, m)
		}
	}
	return done, nil
}

// reverse runs m's down step in a transaction unless another runner
// reversed it first.
func reverse(ctx context.Context, db *sql.DB, m Migration, opts Options) (bool, error) {
	return step(ctx, db, opts, m.Version, true, m.Down, `DELETE FROM schema_migrations WHERE version = ?`, m.Version)
}

// Force sets the recorded version to version without running any migration:
// afterwards schema_migrations holds exactly the migrations of fsys up to
// version (those missing recorded as applied now) and nothing above it.
// Version 0 records none. It is the way out of a migration that failed
// halfway where DDL is not transactional: repair the schema by hand, then
// force the version it is at. Version must be 0 or a migration of fsys.
func Force(ctx context.Context, db *sql.DB, fsys fs.FS, version int, opts Options) (err error) {
	ms, err := Load(fsys)
	if err != nil {
		return err
	}
	if version != 0 && !slices.ContainsFunc(ms, func(m Migration) bool { return m.Version == version }) {
		return fmt.Errorf("force version %d: no such migration (known: 0 for none, %s): %w", version, versionList(ms), ErrRefused)
	}
	if _, err := db.ExecContext(ctx, createTable); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if opts.Lock != "" {
		if _, err := tx.ExecContext(ctx, opts.Lock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	applied, err := appliedMigrations(ctx, tx, opts)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, bind(opts, `DELETE FROM schema_migrations WHERE version > ?`), version); err != nil {
		return fmt.Errorf("force version %d: %w", version, err)
	}
	now := time.Now().UTC().UnixMicro()
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok || m.Version > version {
			continue
		}
		_, err := tx.ExecContext(ctx, bind(opts, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
			m.Version, m.Name, now)
		if err != nil {
			return fmt.Errorf("force version %d: %w", version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("force version %d: commit: %w", version, err)
	}
	return nil
}

func versionList(ms []Migration) string {
	out := ""
	for i, m := range ms {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%d (%s)", m.Version, m.Name)
	}
	return out
}
