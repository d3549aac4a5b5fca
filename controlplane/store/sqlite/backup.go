package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/migrate"
)

// ErrExists is returned by Backup and Restore when the file they would write
// exists and overwriting was not asked for.
var ErrExists = errors.New("file exists")

// ErrNotTalos is returned by Restore for a file that is not a Talos SQLite
// database at a schema version this build knows.
var ErrNotTalos = errors.New("not a Talos database this version can restore")

// Backup writes a consistent copy of the live database at dsn to out with
// VACUUM INTO, which reads one snapshot of the database including the
// transactions still in its write-ahead log (a plain copy of the main file
// misses those) while the server keeps serving. The copy is written to a
// temporary file beside out and renamed into place, so out is either the
// whole backup or untouched. Unless overwrite is set, an existing out is
// ErrExists.
func Backup(ctx context.Context, dsn, out string, overwrite bool) (err error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	if path == memory {
		return errors.New("backup: an in-memory database cannot be backed up")
	}
	// Opening a missing file would create an empty database.
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("backup %s: %w", path, err)
	}
	if !overwrite {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("backup to %s: %w (use --force to replace it)", out, ErrExists)
		}
	}
	db, err := openDB(path, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmpName)
		}
	}()
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// VACUUM INTO accepts an empty existing file.
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmpName); err != nil {
		return fmt.Errorf("backup %s: vacuum into %s: %w", path, tmpName, err)
	}
	if err := syncFile(tmpName); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return install(tmpName, out, overwrite)
}

// Restore replaces the database at dsn with the backup in, after checking
// that in is a Talos database at the schema version of this build and that
// check (the caller's test of the restored data, such as "the configured
// HMAC secret opens the sealed signing keys") passes on it. in is copied to a
// temporary file beside the database and checked there; nothing at dsn is
// touched until every check passed. Unless overwrite is set, an existing
// database is ErrExists. The server must be stopped: a running server keeps
// its own connections, and WAL, on the file being replaced.
func Restore(ctx context.Context, in, dsn string, overwrite bool, check func(context.Context, store.Store) error) (err error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	if path == memory {
		return errors.New("restore: an in-memory database cannot be restored into")
	}
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("restore into %s: %w (stop the server, then use --force to replace it)", path, ErrExists)
		}
	}
	src, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			err = errors.Join(err, removeDB(tmpName))
		}
	}()
	_, err = io.Copy(tmp, src)
	err = errors.Join(err, tmp.Sync(), tmp.Close())
	if err != nil {
		return fmt.Errorf("restore: copy %s: %w", in, err)
	}
	if err := checkBackup(ctx, tmpName, check); err != nil {
		return fmt.Errorf("restore %s: %w", in, err)
	}
	// A WAL left beside the old database would be replayed into the new one.
	if err := removeSidecars(path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return install(tmpName, path, overwrite)
}

// checkBackup opens the copy at path and runs the schema check and check.
// It closes the copy before returning, which checkpoints its WAL back into
// the file.
func checkBackup(ctx context.Context, path string, check func(context.Context, store.Store) error) (err error) {
	db, err := openDB(path, 0)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, db.Close())
		if _, serr := os.Stat(path + "-wal"); serr == nil {
			err = errors.Join(err, fmt.Errorf("%s-wal still there after close", path))
		}
	}()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return fmt.Errorf("%w: %v", ErrNotTalos, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: no schema_migrations table", ErrNotTalos)
	}
	fsys, err := migrations()
	if err != nil {
		return err
	}
	sts, err := migrate.Status(ctx, db, fsys, migrateOptions())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotTalos, err)
	}
	var unknown, pending []string
	for _, st := range sts {
		switch {
		case st.Unknown:
			unknown = append(unknown, fmt.Sprint(st.Version))
		case !st.Applied:
			pending = append(pending, fmt.Sprint(st.Version))
		}
	}
	switch {
	case len(unknown) > 0:
		return fmt.Errorf("%w: it holds migrations %s that this build does not know (made by a newer release; restore with that release)", ErrNotTalos, strings.Join(unknown, ", "))
	case len(pending) > 0:
		return fmt.Errorf("%w: migrations %s are not applied (made by an older release; restore with that release, then upgrade with `talos migrate up`)", ErrNotTalos, strings.Join(pending, ", "))
	}
	s, err := open(ctx, db, path, Options{})
	if err != nil {
		return err
	}
	return check(ctx, s)
}

// install renames tmp to dst; without overwrite it fails with ErrExists if
// dst appeared meanwhile (a hard link never replaces a file).
func install(tmp, dst string, overwrite bool) error {
	if overwrite {
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	} else {
		if err := os.Link(tmp, dst); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s: %w", dst, ErrExists)
			}
			return err
		}
		if err := os.Remove(tmp); err != nil {
			return err
		}
	}
	return syncDir(filepath.Dir(dst))
}

// removeSidecars removes the -wal and -shm files of the database at path.
func removeSidecars(path string) error {
	var errs []error
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeDB removes the database at path and its -wal and -shm files.
func removeDB(path string) error {
	err := os.Remove(path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, removeSidecars(path))
}

func syncFile(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
