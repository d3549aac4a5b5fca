package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"modernc.org/sqlite"

	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
)

// DefaultBusyTimeout is how long a write waits for another writer's lock when
// Options.BusyTimeout is zero.
const DefaultBusyTimeout = 5 * time.Second

// Options configures Open. The zero value opens an already migrated database
// with the default busy timeout.
type Options struct {
	// AutoMigrate applies pending migrations before opening. Without it, Open
	// refuses a database with pending migrations.
	AutoMigrate bool
	// BusyTimeout bounds how long a write waits for the write lock before
	// failing with credential.ErrUnavailable (a call's context can end the
	// wait sooner). Zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
}

// Dialect returns the SQLite dialect: ? placeholders, no row locks (write
// transactions hold the database lock from BEGIN IMMEDIATE), result codes
// classified by Classify, one attempt per transaction, and no event lock
// (writers are serialized already).
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{Name: "sqlite", Placeholder: sqlstore.Question, Classify: classify}
}

// Open opens the SQLite database at dsn (see ParseDSN), creating the file if
// needed, and returns the store over it. Unless opts.AutoMigrate is set, a
// database with pending migrations is an error wrapping migrate.ErrNotMigrated.
// The caller must Close the store.
func Open(ctx context.Context, dsn string, opts Options) (*sqlstore.Store, error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := openDB(path, opts.BusyTimeout)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, db, path, opts)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return s, nil
}

func open(ctx context.Context, db *sql.DB, path string, opts Options) (*sqlstore.Store, error) {
	fsys, err := migrations()
	if err != nil {
		return nil, err
	}
	if opts.AutoMigrate {
		if _, err := migrate.Up(ctx, db, fsys, migrateOptions()); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, diagnose(path, err))
		}
	} else {
		ok, err := migrate.Current(ctx, db, fsys, migrateOptions())
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, diagnose(path, err))
		}
		if !ok {
			return nil, fmt.Errorf("open sqlite %s: %w; run `talos migrate up`", path, migrate.ErrNotMigrated)
		}
	}
	s, err := sqlstore.New(ctx, db, Dialect())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, diagnose(path, err))
	}
	return s, nil
}

// openDB opens a pool on path without touching the file. It uses the driver's
// connector rather than sql.Open, so nothing is looked up by driver name.
func openDB(path string, busy time.Duration) (*sql.DB, error) {
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(max(busy.Milliseconds(), 1), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	c, err := sqlite.NewConnector(path + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db := sql.OpenDB(c)
	if path == memory {
		// Each connection to ":memory:" is a database of its own.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		return db, nil
	}
	// Keep connections, and the statements prepared on them, warm; WAL lets
	// readers run in parallel with the one writer.
	n := max(4, 2*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return db, nil
}
