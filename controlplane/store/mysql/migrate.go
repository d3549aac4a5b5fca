package mysql

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/talos-project/talos/controlplane/store/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the embedded migrations, at the root of the FS.
func migrations() (fs.FS, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	return sub, nil
}

// migrationLockWait bounds how long Migrate waits for another process's
// migration of the same database; the caller's context can end it sooner.
const migrationLockWait = 5 * time.Minute

// Migrate applies the pending migrations to the database of dsn. Concurrent
// calls, from any number of processes, apply each migration once: they take
// turns on a lock named after the database.
func Migrate(ctx context.Context, dsn string) error {
	_, err := MigrateUp(ctx, dsn)
	return err
}

// MigrateUp is Migrate, returning the migrations it applied.
func MigrateUp(ctx context.Context, dsn string) (applied []migrate.Migration, err error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if applied, err = up(ctx, cfg); err != nil {
		return applied, fmt.Errorf("migrate %s: %w", cfg, err)
	}
	return applied, nil
}

// MigrateDown reverses the last steps migrations of the database of dsn
// (see migrate.Down), under the migration lock, and returns those it
// reversed.
func MigrateDown(ctx context.Context, dsn string, steps int) (reversed []migrate.Migration, err error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	err = locked(ctx, cfg, func(db *sql.DB, fsys fs.FS, opts migrate.Options) error {
		reversed, err = migrate.Down(ctx, db, fsys, steps, opts)
		return err
	})
	if err != nil {
		return reversed, fmt.Errorf("roll back %s: %w", cfg, err)
	}
	return reversed, nil
}

// MigrateForce sets the recorded migration version of the database of dsn
// (see migrate.Force), under the migration lock.
func MigrateForce(ctx context.Context, dsn string, version int) error {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	err = locked(ctx, cfg, func(db *sql.DB, fsys fs.FS, opts migrate.Options) error {
		return migrate.Force(ctx, db, fsys, version, opts)
	})
	if err != nil {
		return fmt.Errorf("force %s: %w", cfg, err)
	}
	return nil
}

// MigrationStatus lists the migrations of the database of dsn, applied and
// pending. It only reads: a missing bookkeeping table reads as all pending.
func MigrationStatus(ctx context.Context, dsn string) (_ []migrate.State, err error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := openMigrationDB(cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	fsys, err := migrations()
	if err != nil {
		return nil, err
	}
	sts, err := migrate.Status(ctx, db, fsys, migrate.Options{Missing: noSuchTable})
	if err != nil {
		return nil, fmt.Errorf("read %s migration status: %w", cfg, err)
	}
	return sts, nil
}

// noSuchTable reports MySQL's ER_NO_SUCH_TABLE.
func noSuchTable(err error) bool {
	var me *mysqldriver.MySQLError
	return errors.As(err, &me) && me.Number == errNoSuchTable
}

// up runs the migration runner under the database's migration lock.
//
// MySQL commits DDL implicitly, so the runner's per-migration transaction
// does not make a migration atomic. Two things make that safe: every
// migration file is idempotent (CREATE TABLE IF NOT EXISTS, each table with
// its indexes in one statement; INSERT IGNORE), so a migration that failed
// halfway, before its schema_migrations row, completes when run again; and
// the whole run holds GET_LOCK, so a second runner waits and then finds
// every version recorded.
//
// GET_LOCK belongs to a session, so the run uses a pool of exactly one
// connection. Should that connection be replaced mid-run, migrate.Options.Lock
// takes the lock again at the start of each migration (GET_LOCK nests within
// a session), and the runner's re-check of schema_migrations remains.
func up(ctx context.Context, cfg Config) (applied []migrate.Migration, err error) {
	err = locked(ctx, cfg, func(db *sql.DB, fsys fs.FS, opts migrate.Options) error {
		applied, err = migrate.Up(ctx, db, fsys, opts)
		return err
	})
	return applied, err
}

// locked runs f on a one-connection pool holding the database's migration
// lock, with the runner's options that take it again per migration.
func locked(ctx context.Context, cfg Config, f func(*sql.DB, fs.FS, migrate.Options) error) (err error) {
	db, err := openMigrationDB(cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	fsys, err := migrations()
	if err != nil {
		return err
	}
	name := lockName(cfg.Driver.DBName)
	wait := int(migrationLockWait / time.Second)
	var got sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", name, wait).Scan(&got); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("take the migration lock: another migration held it for %s", migrationLockWait)
	}
	defer func() {
		// Closing the connection would release it too; this says so.
		_, rerr := db.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_ALL_LOCKS()")
		err = errors.Join(err, rerr)
	}()
	lock := fmt.Sprintf("DO GET_LOCK('%s', %d)", name, wait) // name is hex and ASCII
	return f(db, fsys, migrate.Options{Lock: lock, Missing: noSuchTable})
}

// openMigrationDB returns a one-connection pool that accepts multi-statement
// scripts.
func openMigrationDB(cfg Config) (*sql.DB, error) {
	db, err := openDB(cfg, true)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// lockName is the migration lock of database db. GET_LOCK names are
// server-wide and at most 64 characters, so the database name is hashed.
func lockName(db string) string {
	h := fnv.New64a()
	h.Write([]byte(db))
	return fmt.Sprintf("talos_migrate_%016x", h.Sum64())
}
