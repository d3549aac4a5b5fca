package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
	"github.com/talos-project/talos/pkg/credential"
)

// errNoConfig is the error of a Flavor method given a Config that ParseDSN
// did not make.
var errNoConfig = errors.New("postgres: the Config was not made by ParseDSN")

// Options configures Open. The zero value opens an already migrated database
// with the DSN's search_path.
type Options struct {
	// AutoMigrate applies pending migrations before opening. Without it, Open
	// refuses a database with pending migrations.
	AutoMigrate bool
	// Schema, when set, is the only schema on every connection's search_path,
	// where the tables are created and found. Tests use it to give each test
	// a schema of its own. It overrides a search_path in the DSN.
	Schema string
}

// Advisory lock keys, one number per purpose: PostgreSQL's advisory locks
// are per database, so every Talos schema in one database shares them.
const (
	// eventsLockKey serializes the transactions that append outbox events.
	eventsLockKey = "7283105634781208069"
	// migrationsLockKey serializes concurrent migration runs.
	migrationsLockKey = "7283105634781208070"
)

// Dialect returns the PostgreSQL dialect: $n placeholders, rows locked with
// FOR UPDATE, errors classified by SQLSTATE, transactions retried after a
// serialization failure or a deadlock, and a transaction-scoped advisory
// lock taken before each event is appended, so that events.seq order is
// commit order.
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:        "postgres",
		Placeholder: sqlstore.Dollar,
		LockRow:     " FOR UPDATE",
		Classify:    classify,
		Retryable:   retryable,
		LockEvents:  "SELECT pg_advisory_xact_lock(" + eventsLockKey + ")",
	}
}

// PostgreSQL is the Flavor of PostgreSQL itself: Open, Migrate and
// MigrationStatus use it.
func PostgreSQL() Flavor {
	return Flavor{
		Dialect:       Dialect(),
		Migrations:    Migrations(),
		MigrationLock: "SELECT pg_advisory_xact_lock(" + migrationsLockKey + ")",
	}
}

// Open opens the PostgreSQL database at dsn (see ParseDSN) and returns the
// store over it. Unless opts.AutoMigrate is set, a database with pending
// migrations is an error wrapping migrate.ErrNotMigrated; a database that
// cannot be reached is an error wrapping credential.ErrUnavailable. The
// caller must Close the store.
func Open(ctx context.Context, dsn string, opts Options) (*sqlstore.Store, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return PostgreSQL().Open(ctx, cfg, opts)
}

// Migrate applies the pending migrations to the database at dsn.
func Migrate(ctx context.Context, dsn string) error {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	return PostgreSQL().Migrate(ctx, cfg)
}

// MigrateUp applies the pending migrations to the database at dsn and
// returns those it applied.
func MigrateUp(ctx context.Context, dsn string) ([]migrate.Migration, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return PostgreSQL().MigrateUp(ctx, cfg)
}

// MigrateDown reverses the last steps migrations of the database at dsn (see
// migrate.Down).
func MigrateDown(ctx context.Context, dsn string, steps int) ([]migrate.Migration, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return PostgreSQL().MigrateDown(ctx, cfg, steps)
}

// MigrateForce sets the recorded migration version of the database at dsn
// (see migrate.Force).
func MigrateForce(ctx context.Context, dsn string, version int) error {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	return PostgreSQL().MigrateForce(ctx, cfg, version)
}

// MigrationStatus lists the migrations of the database at dsn, applied and
// pending. It only reads: a missing bookkeeping table reads as all pending.
func MigrationStatus(ctx context.Context, dsn string) ([]migrate.State, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return PostgreSQL().MigrationStatus(ctx, cfg)
}

// Flavor is a database that speaks PostgreSQL's protocol, as Open, Migrate
// and MigrationStatus need to know it: PostgreSQL's is PostgreSQL(), and
// package cockroach derives CockroachDB's. A Flavor is a plain value.
type Flavor struct {
	// Dialect drives the store; its Name names the database in errors.
	Dialect sqlstore.Dialect
	// Migrations holds the NNNN_name.up.sql files, at its root.
	Migrations fs.FS
	// MigrationLock is executed first in each migration's transaction (see
	// migrate.Options.Lock), to serialize concurrent runs; empty for none.
	MigrationLock string
}

// Open opens the database cfg describes and returns the store over it, as
// the package-level Open does.
func (f Flavor) Open(ctx context.Context, cfg Config, opts Options) (*sqlstore.Store, error) {
	if cfg.conn == nil {
		return nil, errNoConfig
	}
	if opts.Schema != "" {
		cfg = cfg.withSchema(opts.Schema)
	}
	db := openDB(cfg)
	s, err := f.open(ctx, db, cfg, opts)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return s, nil
}

func (f Flavor) open(ctx context.Context, db *sql.DB, cfg Config, opts Options) (*sqlstore.Store, error) {
	op := fmt.Sprintf("open %s %s", f.Dialect.Name, cfg)
	if opts.AutoMigrate {
		if _, err := f.migrate(ctx, db); err != nil {
			return nil, f.wrap(op, err)
		}
	} else {
		ok, err := f.current(ctx, db)
		if err != nil {
			return nil, f.wrap(op, err)
		}
		if !ok {
			return nil, fmt.Errorf("%s: %w; run `talos migrate up`", op, migrate.ErrNotMigrated)
		}
	}
	s, err := sqlstore.New(ctx, db, f.Dialect)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return s, nil
}

// current reports whether every migration of f has been applied. Unlike
// migrate.Current it writes nothing (it does not create the bookkeeping
// table), so that a read-only replica, such as a hot standby, can be opened.
func (f Flavor) current(ctx context.Context, db *sql.DB) (bool, error) {
	ms, err := migrate.Load(f.Migrations)
	if err != nil {
		return false, err
	}
	rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if undefinedTable(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer rows.Close()
	applied := make(map[int]bool)
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return false, err
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, m := range ms {
		if !applied[m.Version] {
			return false, nil
		}
	}
	return true, nil
}

// Migrate applies the pending migrations to the database cfg describes.
func (f Flavor) Migrate(ctx context.Context, cfg Config) error {
	_, err := f.MigrateUp(ctx, cfg)
	return err
}

// MigrateUp applies the pending migrations to the database cfg describes and
// returns those it applied.
func (f Flavor) MigrateUp(ctx context.Context, cfg Config) (applied []migrate.Migration, err error) {
	err = f.withDB(ctx, cfg, "migrate", func(db *sql.DB) error {
		applied, err = f.migrate(ctx, db)
		return err
	})
	return applied, err
}

// MigrateDown reverses the last steps migrations of the database cfg
// describes (see migrate.Down) and returns those it reversed.
func (f Flavor) MigrateDown(ctx context.Context, cfg Config, steps int) (reversed []migrate.Migration, err error) {
	err = f.withDB(ctx, cfg, "roll back", func(db *sql.DB) error {
		reversed, err = migrate.Down(ctx, db, f.Migrations, steps, f.migrateOptions())
		return err
	})
	return reversed, err
}

// MigrateForce sets the recorded migration version of the database cfg
// describes (see migrate.Force).
func (f Flavor) MigrateForce(ctx context.Context, cfg Config, version int) error {
	return f.withDB(ctx, cfg, "force", func(db *sql.DB) error {
		return migrate.Force(ctx, db, f.Migrations, version, f.migrateOptions())
	})
}

// MigrationStatus lists the migrations of the database cfg describes,
// applied and pending. It only reads.
func (f Flavor) MigrationStatus(ctx context.Context, cfg Config) (sts []migrate.State, err error) {
	err = f.withDB(ctx, cfg, "read migration status of", func(db *sql.DB) error {
		sts, err = migrate.Status(ctx, db, f.Migrations, f.migrateOptions())
		return err
	})
	return sts, err
}

// withDB runs fn on a pool over the database cfg describes; op names what
// it does in errors.
func (f Flavor) withDB(ctx context.Context, cfg Config, op string, fn func(*sql.DB) error) (err error) {
	if cfg.conn == nil {
		return errNoConfig
	}
	db := openDB(cfg)
	defer func() { err = errors.Join(err, db.Close()) }()
	if err := fn(db); err != nil {
		op = fmt.Sprintf("%s %s %s", op, f.Dialect.Name, cfg)
		if errors.Is(err, migrate.ErrRefused) { // the runner's, no driver error
			return fmt.Errorf("%s: %w", op, err)
		}
		return f.wrap(op, err)
	}
	return nil
}

// migrateOptions are the runner's options for f.
func (f Flavor) migrateOptions() migrate.Options {
	return migrate.Options{Dollar: true, Lock: f.MigrationLock, Missing: undefinedTable}
}

// undefinedTable reports PostgreSQL's undefined_table (CockroachDB uses the
// same code).
func undefinedTable(err error) bool {
	pe := (*pgconn.PgError)(nil)
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// migrate runs migrate.Up, and again when it fails for a reason other than
// an unreachable database, because a concurrent run can make it fail: with a
// MigrationLock, runs serialize migration by migration, but the runner
// creates its bookkeeping table outside that lock, and concurrent CREATE
// TABLE IF NOT EXISTS can fail on PostgreSQL; without one (CockroachDB), the
// loser of a race for one migration fails on its transaction. Either way a
// rerun finds what the winner applied. A migration that fails by itself
// fails every attempt, each rolled back.
func (f Flavor) migrate(ctx context.Context, db *sql.DB) ([]migrate.Migration, error) {
	ms, err := migrate.Load(f.Migrations)
	if err != nil {
		return nil, err
	}
	var all []migrate.Migration
	for attempt := 0; ; attempt++ {
		applied, err := migrate.Up(ctx, db, f.Migrations, f.migrateOptions())
		all = append(all, applied...)
		// Each failed attempt that another run caused leaves at least one
		// more migration applied, so len(ms)+1 attempts are enough.
		var ce *pgconn.ConnectError
		if err == nil || attempt > len(ms) || ctx.Err() != nil || errors.As(err, &ce) {
			return all, err
		}
	}
}

// wrap adds op to err, a failure of the database outside the store. The
// driver error's text is kept but not its type, so no pgx error escapes; a
// database that is not there wraps credential.ErrUnavailable, and an ended
// context its error.
func (f Flavor) wrap(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	kind := f.Dialect.Classify(err)
	var netErr net.Error
	if kind == nil && (errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn)) {
		kind = credential.ErrUnavailable
	}
	if kind != nil {
		return fmt.Errorf("%s: %w: %v", op, kind, err)
	}
	return fmt.Errorf("%s: %v", op, err)
}

// openDB returns a pool over cfg without connecting. It uses pgx's
// connector rather than sql.Open, so nothing is looked up by driver name.
func openDB(cfg Config) *sql.DB {
	db := stdlib.OpenDB(*cfg.conn)
	db.SetMaxOpenConns(cfg.Pool.MaxConns)
	db.SetMaxIdleConns(cfg.Pool.MaxIdleConns)
	db.SetConnMaxLifetime(cfg.Pool.MaxConnLifetime)
	db.SetConnMaxIdleTime(cfg.Pool.MaxConnIdleTime)
	return db
}
