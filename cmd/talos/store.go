package main

import (
	"context"
	"fmt"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/cockroach"
	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/mysql"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/config"
)

// backend is what the commands need of a store package.
type backend struct {
	open   func(ctx context.Context, dsn string, autoMigrate bool) (store.Store, error)
	up     func(ctx context.Context, dsn string) ([]migrate.Migration, error)
	down   func(ctx context.Context, dsn string, steps int) ([]migrate.Migration, error)
	force  func(ctx context.Context, dsn string, version int) error
	status func(ctx context.Context, dsn string) ([]migrate.State, error)
}

// backendFor picks the store package by the DSN's scheme.
func backendFor(dsn string) (backend, error) {
	switch (config.DB{DSN: config.NewSecret(dsn)}).Driver() {
	case config.DriverSQLite:
		return backend{
			open: func(ctx context.Context, dsn string, m bool) (store.Store, error) {
				return sqlite.Open(ctx, dsn, sqlite.Options{AutoMigrate: m})
			},
			up: sqlite.MigrateUp, down: sqlite.MigrateDown, force: sqlite.MigrateForce, status: sqlite.MigrationStatus,
		}, nil
	case config.DriverPostgres:
		return backend{
			open: func(ctx context.Context, dsn string, m bool) (store.Store, error) {
				return postgres.Open(ctx, dsn, postgres.Options{AutoMigrate: m})
			},
			up: postgres.MigrateUp, down: postgres.MigrateDown, force: postgres.MigrateForce, status: postgres.MigrationStatus,
		}, nil
	case config.DriverCockroach:
		return backend{
			open: func(ctx context.Context, dsn string, m bool) (store.Store, error) {
				return cockroach.Open(ctx, dsn, cockroach.Options{AutoMigrate: m})
			},
			up: cockroach.MigrateUp, down: cockroach.MigrateDown, force: cockroach.MigrateForce, status: cockroach.MigrationStatus,
		}, nil
	case config.DriverMySQL:
		return backend{
			open: func(ctx context.Context, dsn string, m bool) (store.Store, error) {
				return mysql.Open(ctx, dsn, mysql.Options{AutoMigrate: m})
			},
			up: mysql.MigrateUp, down: mysql.MigrateDown, force: mysql.MigrateForce, status: mysql.MigrationStatus,
		}, nil
	}
	return backend{}, fmt.Errorf("database scheme %q is not supported: want sqlite://, postgres://, mysql:// or cockroach://", dsnScheme(dsn))
}

// openStore opens the database named by dsn, by its scheme.
func openStore(ctx context.Context, dsn string, autoMigrate bool) (store.Store, error) {
	if dsn == "" {
		return nil, fmt.Errorf("db.dsn is required")
	}
	b, err := backendFor(dsn)
	if err != nil {
		return nil, err
	}
	return b.open(ctx, dsn, autoMigrate)
}
