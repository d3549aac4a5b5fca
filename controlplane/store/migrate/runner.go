package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"slices"
	"time"
)

// Options holds what differs between databases.
type Options struct {
	// Dollar selects $1-style placeholders (PostgreSQL, CockroachDB) for the
	// bookkeeping statements; false selects ? (SQLite, MySQL).
	Dollar bool
	// Lock, when set, is executed first in every migration's transaction to
	// serialize concurrent runners (for example
	// "SELECT pg_advisory_xact_lock(…)").
	Lock string
	// Missing reports whether err, from reading schema_migrations, says the
	// table does not exist, which Status, Current and Down read as nothing
	// applied. Without it such an error is returned.
	Missing func(err error) bool
}

// State is one migration as the database knows it.
type State struct {
	Version int
	Name    string
	Applied bool
	// AppliedAt is when the migration was applied, in UTC; zero when pending.
	AppliedAt time.Time
	// Unknown marks a migration the database has applied but fsys does not
	// hold: the database was migrated by a newer release.
	Unknown bool
}

const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (` +
	`version BIGINT NOT NULL PRIMARY KEY, ` +
	`name VARCHAR(255) NOT NULL, ` +
	`applied_at BIGINT NOT NULL)`

// Up applies the pending migrations of fsys in version order, each in its own
// transaction, and returns those it applied. On error, the migrations before
// the failing one stay applied.
func Up(ctx context.Context, db *sql.DB, fsys fs.FS, opts Options) ([]Migration, error) {
	ms, err := Load(fsys)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, createTable); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := appliedMigrations(ctx, db, opts)
	if err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		ran, err := apply(ctx, db, m, opts)
		if err != nil {
			return done, fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if ran {
			done = append(done, m)
		}
	}
	return done, nil
}

// apply runs m in a transaction unless another runner applied it first.
func apply(ctx context.Context, db *sql.DB, m Migration, opts Options) (bool, error) {
	return step(ctx, db, opts, m.Version, false, m.SQL,
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().UTC().UnixMicro())
}

// step runs script and then the bookkeeping statement record (with args) in
// one transaction, after opts.Lock, when version's row in schema_migrations
// is present (recorded true) or absent (false). Otherwise another runner
// got there first: it does nothing and reports false.
func step(ctx context.Context, db *sql.DB, opts Options, version int, recorded bool, script, record string, args ...any) (ran bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if !ran || err != nil {
			_ = tx.Rollback()
		}
	}()
	if opts.Lock != "" {
		if _, err := tx.ExecContext(ctx, opts.Lock); err != nil {
			return false, fmt.Errorf("lock: %w", err)
		}
	}
	var n int
	err = tx.QueryRowContext(ctx, bind(opts, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n)
	if err != nil || (n > 0) != recorded {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, script); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, bind(opts, record), args...); err != nil {
		return false, fmt.Errorf("record: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// Status lists every migration of fsys and every migration the database has
// applied, in version order. It only reads: a missing schema_migrations table
// (see Options.Missing) reads as all pending.
func Status(ctx context.Context, db *sql.DB, fsys fs.FS, opts Options) ([]State, error) {
	ms, err := Load(fsys)
	if err != nil {
		return nil, err
	}
	applied, err := appliedMigrations(ctx, db, opts)
	if err != nil {
		return nil, err
	}
	out := make([]State, 0, len(ms))
	for _, m := range ms {
		st, ok := applied[m.Version]
		if !ok {
			st = State{Version: m.Version, Name: m.Name}
		}
		st.Name = m.Name
		delete(applied, m.Version)
		out = append(out, st)
	}
	for _, st := range applied {
		st.Unknown = true
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b State) int { return a.Version - b.Version })
	return out, nil
}

// Current reports whether every migration of fsys has been applied. Like
// Status, it only reads.
func Current(ctx context.Context, db *sql.DB, fsys fs.FS, opts Options) (bool, error) {
	sts, err := Status(ctx, db, fsys, opts)
	if err != nil {
		return false, err
	}
	for _, st := range sts {
		if !st.Applied {
			return false, nil
		}
	}
	return true, nil
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// appliedMigrations reads schema_migrations; a missing table (see
// Options.Missing) is an empty one.
func appliedMigrations(ctx context.Context, db querier, opts Options) (map[int]State, error) {
	rows, err := db.QueryContext(ctx, `SELECT version, name, applied_at FROM schema_migrations`)
	if err != nil {
		if opts.Missing != nil && opts.Missing(err) {
			return map[int]State{}, nil
		}
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := make(map[int]State)
	for rows.Next() {
		var (
			st State
			at int64
		)
		if err := rows.Scan(&st.Version, &st.Name, &at); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		st.Applied, st.AppliedAt = true, time.UnixMicro(at).UTC()
		applied[st.Version] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// bind rewrites q's ? placeholders as $1, $2, … when opts asks for it.
func bind(opts Options, q string) string {
	if !opts.Dollar {
		return q
	}
	out := make([]byte, 0, len(q)+8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			out = append(out, q[i])
			continue
		}
		n++
		out = append(out, '$')
		out = fmt.Appendf(out, "%d", n)
	}
	return string(out)
}
