package sqlite

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

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

// Migrate applies the pending migrations to the database at dsn.
func Migrate(ctx context.Context, dsn string) (err error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	db, err := openDB(path, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	fsys, err := migrations()
	if err != nil {
		return err
	}
	if _, err := migrate.Up(ctx, db, fsys, migrate.Options{}); err != nil {
		return fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	return nil
}

// MigrationStatus lists the migrations of the database at dsn, applied and
// pending.
func MigrationStatus(ctx context.Context, dsn string) (_ []migrate.State, err error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := openDB(path, 0)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	fsys, err := migrations()
	if err != nil {
		return nil, err
	}
	sts, err := migrate.Status(ctx, db, fsys)
	if err != nil {
		return nil, fmt.Errorf("read sqlite %s migration status: %w", path, err)
	}
	return sts, nil
}
