package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

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

// migrateOptions are the runner's options for SQLite.
func migrateOptions() migrate.Options { return migrate.Options{Missing: missingTable} }

// missingTable reports SQLite's "no such table" (a plain SQLITE_ERROR, told
// apart by its message).
func missingTable(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_ERROR &&
		strings.Contains(se.Error(), "no such table: schema_migrations")
}

// Migrate applies the pending migrations to the database at dsn.
func Migrate(ctx context.Context, dsn string) error {
	_, err := MigrateUp(ctx, dsn)
	return err
}

// MigrateUp applies the pending migrations to the database at dsn, creating
// the file if needed, and returns those it applied.
func MigrateUp(ctx context.Context, dsn string) (applied []migrate.Migration, err error) {
	err = withDB(ctx, dsn, "migrate", func(db *sql.DB, fsys fs.FS) error {
		applied, err = migrate.Up(ctx, db, fsys, migrateOptions())
		return err
	})
	return applied, err
}

// MigrateDown reverses the last steps migrations of the database at dsn (see
// migrate.Down) and returns those it reversed.
func MigrateDown(ctx context.Context, dsn string, steps int) (reversed []migrate.Migration, err error) {
	err = withDB(ctx, dsn, "roll back", func(db *sql.DB, fsys fs.FS) error {
		reversed, err = migrate.Down(ctx, db, fsys, steps, migrateOptions())
		return err
	})
	return reversed, err
}

// MigrateForce sets the recorded migration version of the database at dsn
// (see migrate.Force).
func MigrateForce(ctx context.Context, dsn string, version int) error {
	return withDB(ctx, dsn, "force", func(db *sql.DB, fsys fs.FS) error {
		return migrate.Force(ctx, db, fsys, version, migrateOptions())
	})
}

// withDB runs f on a read-write pool over the database at dsn.
func withDB(ctx context.Context, dsn, op string, f func(*sql.DB, fs.FS) error) (err error) {
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
	if err := f(db, fsys); err != nil {
		return fmt.Errorf("%s sqlite %s: %w", op, path, diagnose(path, err))
	}
	return nil
}

// MigrationStatus lists the migrations of the database at dsn, applied and
// pending. It only reads: the file is opened read-only, and a missing file
// is an error rather than a new empty database.
func MigrationStatus(ctx context.Context, dsn string) (_ []migrate.State, err error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	fsys, err := migrations()
	if err != nil {
		return nil, err
	}
	db, err := openReadOnly(path)
	if err != nil {
		return nil, fmt.Errorf("read sqlite %s migration status: %w", path, err)
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	sts, err := migrate.Status(ctx, db, fsys, migrateOptions())
	if err != nil {
		return nil, fmt.Errorf("read sqlite %s migration status: %w", path, diagnose(path, err))
	}
	return sts, nil
}

// openReadOnly opens path read-only; a missing file is an error. A private
// in-memory database (always empty) is opened as usual.
func openReadOnly(path string) (*sql.DB, error) {
	if path == memory {
		return openDB(path, 0)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("the database file does not exist (`talos migrate up` creates it)")
		}
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", strconv.FormatInt(DefaultBusyTimeout.Milliseconds(), 10))
	c, err := sqlite.NewConnector("file:" + strings.ReplaceAll(path, "%", "%25") + "?" + q.Encode())
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// diagnose replaces SQLite's "unable to open database file" and "attempt to
// write a readonly database" with what is wrong with path: a missing
// directory, a read-only file system, or a directory or file this user may
// not write. SQLite needs to write the directory as well as the file (its
// -wal and -shm files live beside the database). Other errors pass through.
func diagnose(path string, err error) error {
	var se *sqlite.Error
	if path == memory || !errors.As(err, &se) {
		return err
	}
	if c := se.Code() & 0xff; c != sqlite3.SQLITE_CANTOPEN && c != sqlite3.SQLITE_READONLY {
		return err
	}
	dir := filepath.Dir(path)
	st, serr := os.Stat(dir)
	switch {
	case errors.Is(serr, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist; create it, or fix db.dsn (%w)", dir, err)
	case serr != nil:
		return fmt.Errorf("directory %s: %v (%w)", dir, serr, err)
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory (%w)", dir, err)
	}
	probe, perr := os.CreateTemp(dir, ".talos-write-check-*")
	if perr == nil {
		_ = probe.Close()
		_ = os.Remove(probe.Name())
		if f, ferr := os.OpenFile(path, os.O_RDWR, 0); ferr != nil && !errors.Is(ferr, fs.ErrNotExist) {
			return fmt.Errorf("database file %s is not writable: %v (%w)", path, ferr, err)
		} else if ferr == nil {
			_ = f.Close()
		}
		return err
	}
	if isReadOnlyFS(perr) {
		return fmt.Errorf("the file system holding %s is read-only; SQLite must write the database and its -wal and -shm files there (%w)", dir, err)
	}
	return fmt.Errorf("directory %s is not writable: %v; SQLite must create the database and its -wal and -shm files there (%w)", dir, errors.Unwrap(perr), err)
}
