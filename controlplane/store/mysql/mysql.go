package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
)

// lockEvents is the Dialect's LockEvents: it locks the one row of
// events_lock (created by migration 0001) until the transaction ends. A
// row lock, unlike GET_LOCK, is released by COMMIT and ROLLBACK themselves,
// and by the server when a connection dies mid-transaction.
const lockEvents = "SELECT id FROM events_lock WHERE id = 1 FOR UPDATE"

// Options configures Open. The zero value opens an already migrated database.
type Options struct {
	// AutoMigrate applies pending migrations before opening. Without it, Open
	// refuses a database with pending migrations.
	AutoMigrate bool
}

// Dialect returns the MySQL dialect: ? placeholders, FOR UPDATE row locks,
// errors classified by number, deadlocks and lock wait timeouts retried, and
// event appends serialized on the events_lock row so that sequence order is
// commit order.
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:        "mysql",
		Placeholder: sqlstore.Question,
		LockRow:     " FOR UPDATE",
		Classify:    classify,
		Retryable:   retryable,
		LockEvents:  lockEvents,
	}
}

// Open connects to the database of dsn (see ParseDSN) and returns the store
// over it, with the pool settings of the DSN. Unless opts.AutoMigrate is set,
// a database with pending migrations is an error wrapping
// migrate.ErrNotMigrated. Open connects once, to check the schema and
// prepare the verify statement, so an unreachable server fails it. Errors
// name the server, user and database, never the password. The caller must
// Close the store.
func Open(ctx context.Context, dsn string, opts Options) (*sqlstore.Store, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if opts.AutoMigrate {
		if _, err := up(ctx, cfg); err != nil {
			return nil, fmt.Errorf("open %s: %w", cfg, err)
		}
	}
	db, err := openDB(cfg, false)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, db, cfg, opts)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return s, nil
}

func open(ctx context.Context, db *sql.DB, cfg Config, opts Options) (*sqlstore.Store, error) {
	if !opts.AutoMigrate {
		fsys, err := migrations()
		if err != nil {
			return nil, err
		}
		ok, err := current(ctx, db, fsys)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", cfg, err)
		}
		if !ok {
			return nil, fmt.Errorf("open %s: %w; run `talos migrate up`", cfg, migrate.ErrNotMigrated)
		}
	}
	s, err := sqlstore.New(ctx, db, Dialect())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg, err)
	}
	return s, nil
}

// current reports whether every migration of fsys is recorded in
// schema_migrations; a missing table means none is. Unlike migrate.Current,
// which creates the table when it is missing, it only reads, so that the
// user `talos serve` connects as needs no CREATE privilege (MySQL checks it
// even for CREATE TABLE IF NOT EXISTS of a table that exists).
func current(ctx context.Context, db *sql.DB, fsys fs.FS) (bool, error) {
	ms, err := migrate.Load(fsys)
	if err != nil {
		return false, err
	}
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		if noSuchTable(err) {
			return false, nil
		}
		return false, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := make(map[int]bool, len(ms))
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return false, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if !applied[m.Version] {
			return false, nil
		}
	}
	return true, nil
}

// openDB returns a pool over cfg without connecting. multi allows several
// statements per call, which only migrations need. It uses the driver's
// connector rather than sql.Open, so nothing is looked up by driver name.
func openDB(cfg Config, multi bool) (*sql.DB, error) {
	d := cfg.Driver.Clone()
	d.MultiStatements = multi
	c, err := mysqldriver.NewConnector(d)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg, err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(cfg.Pool.MaxConns)
	db.SetMaxIdleConns(cfg.Pool.MaxIdleConns)
	db.SetConnMaxLifetime(cfg.Pool.MaxConnLifetime)
	db.SetConnMaxIdleTime(cfg.Pool.MaxConnIdleTime)
	return db, nil
}
