// Package cockroach opens the CockroachDB backend of the control-plane
// store: PostgreSQL's backend (package postgres: pgx, the pool, the
// dialect) with CockroachDB's transaction retries and the few schema and
// locking differences CockroachDB needs.
//
// # Transactions
//
// CockroachDB runs every transaction SERIALIZABLE and asks the client to
// retry one that lost a conflict (SQLSTATE 40001), at any statement or at
// commit. InTx therefore runs its function through cockroach-go's
// crdb.ExecuteTx, which opens the transaction with SAVEPOINT
// cockroach_restart, rolls back to it and runs the function again after a
// 40001 (up to 50 times), and commits with RELEASE. The function may run
// more than once, as store.Store.InTx allows. Rows read in a transaction
// are locked with SELECT … FOR UPDATE, as on PostgreSQL.
//
// # Event order
//
// CockroachDB's advisory-lock functions were no-op stubs until its latest
// releases, so they are not used. Before appending an outbox event, a
// transaction updates the one row of the events_lock table; the write holds
// every other such transaction until it ends, so events.seq order is commit
// order and a tailer reading by cursor skips nothing. The cost is that
// transactions appending events run one at a time, as on PostgreSQL.
//
// # Testing
//
// No CockroachDB binary can be had where Talos is built, so the tests run
// this dialect, its migrations and its retry path against PostgreSQL; see
// docs/storage.md.
//
// This package imports postgres, sqlstore, migrate and cockroach-go's crdb.
// Stores it opens are safe for concurrent use.
package cockroach

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"net/url"
	"strings"

	"github.com/cockroachdb/cockroach-go/v2/crdb"

	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
)

// DefaultPort is the port a DSN without one connects to.
const DefaultPort = "26257"

// Options configures Open; see postgres.Options.
type Options = postgres.Options

// Dialect returns the CockroachDB dialect: PostgreSQL's, with transactions
// run by crdb.ExecuteTx (which retries them itself, so Retryable is unset)
// and events ordered by the events_lock row instead of an advisory lock.
func Dialect() sqlstore.Dialect {
	d := postgres.Dialect()
	d.Name = "cockroach"
	d.ExecTx = execTx
	d.Retryable = nil
	d.LockEvents = "UPDATE events_lock SET n = n + 1 WHERE id = 1"
	return d
}

// execTx is the Dialect's ExecTx.
func execTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	return crdb.ExecuteTx(ctx, db, nil, fn)
}

// Migrations returns CockroachDB's migrations: PostgreSQL's, except those
// this package replaces with a file of the same name.
func Migrations() fs.FS {
	own, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "migrations" is valid.
		panic(err)
	}
	return overlay{top: own, base: postgres.Migrations()}
}

// CockroachDB is the Flavor Open, Migrate and MigrationStatus use. Its
// migrations take no lock, there being no advisory lock to rely on: of two
// concurrent runs, the one that loses a migration's transaction runs again
// and finds it applied.
func CockroachDB() postgres.Flavor {
	return postgres.Flavor{Dialect: Dialect(), Migrations: Migrations()}
}

// ParseDSN parses a cockroach:// or cockroachdb:// URL, which is a
// postgres:// URL (see postgres.ParseDSN, pool parameters included) whose
// port defaults to 26257. Errors never contain the DSN.
func ParseDSN(dsn string) (postgres.Config, error) {
	lower := strings.ToLower(dsn)
	var rest string
	for _, scheme := range []string{"cockroach://", "cockroachdb://"} {
		if strings.HasPrefix(lower, scheme) {
			rest = dsn[len(scheme):]
			break
		}
	}
	if rest == "" {
		return postgres.Config{}, errors.New("parse cockroach dsn: not a cockroach:// or cockroachdb:// URL")
	}
	pg := "postgres://" + rest
	if u, err := url.Parse(pg); err == nil && u.Host != "" && u.Port() == "" && !strings.Contains(u.Host, ",") {
		u.Host += ":" + DefaultPort
		pg = u.String()
	}
	cfg, err := postgres.ParseDSN(pg)
	if err != nil {
		// Name the scheme the user wrote; the reason never quotes the DSN.
		return postgres.Config{}, errors.New("parse cockroach dsn: " + strings.TrimPrefix(err.Error(), "parse postgres dsn: "))
	}
	return cfg, nil
}

// Open opens the CockroachDB database at dsn (see ParseDSN) and returns the
// store over it. Unless opts.AutoMigrate is set, a database with pending
// migrations is an error wrapping migrate.ErrNotMigrated; a database that
// cannot be reached is an error wrapping credential.ErrUnavailable. The
// caller must Close the store.
func Open(ctx context.Context, dsn string, opts Options) (*sqlstore.Store, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return CockroachDB().Open(ctx, cfg, opts)
}

// Migrate applies the pending migrations to the database at dsn.
func Migrate(ctx context.Context, dsn string) error {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	return CockroachDB().Migrate(ctx, cfg)
}

// MigrateUp applies the pending migrations to the database at dsn and
// returns those it applied.
func MigrateUp(ctx context.Context, dsn string) ([]migrate.Migration, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return CockroachDB().MigrateUp(ctx, cfg)
}

// MigrateDown reverses the last steps migrations of the database at dsn (see
// migrate.Down).
func MigrateDown(ctx context.Context, dsn string, steps int) ([]migrate.Migration, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return CockroachDB().MigrateDown(ctx, cfg, steps)
}

// MigrateForce sets the recorded migration version of the database at dsn
// (see migrate.Force).
func MigrateForce(ctx context.Context, dsn string, version int) error {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	return CockroachDB().MigrateForce(ctx, cfg, version)
}

// MigrationStatus lists the migrations of the database at dsn, applied and
// pending. It only reads.
func MigrationStatus(ctx context.Context, dsn string) ([]migrate.State, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return CockroachDB().MigrationStatus(ctx, cfg)
}
