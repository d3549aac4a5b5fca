// Package migrate is a small versioned migration runner over database/sql.
//
// Migrations are files named NNNN_name.up.sql at the root of an fs.FS (an
// embed.FS, usually after fs.Sub), applied in version order. Each is applied
// in its own transaction together with its row in the schema_migrations
// table (version, name, applied_at in unix microseconds), so a failed
// migration leaves no trace where the database has transactional DDL
// (SQLite, PostgreSQL, CockroachDB; MySQL commits DDL implicitly).
//
// A migration that can be reversed has a NNNN_name.down.sql beside it, which
// Down runs (in a transaction, with the removal of its row). A migration
// without one is irreversible: Down refuses it before changing anything.
// Other files are ignored.
//
// A migration file is executed as one Exec, so a driver must accept several
// statements in one call (modernc SQLite and pgx do; MySQL needs
// multiStatements=true).
//
// Concurrency: Up re-checks each version inside its transaction, so two
// processes migrating the same database do not apply a version twice where
// the first transaction's lock blocks the second (SQLite with BEGIN
// IMMEDIATE); elsewhere the loser fails on the schema_migrations primary key
// and a rerun finds the schema current. Options.Lock can serialize them.
//
// This package imports only the standard library.
package migrate

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// ErrNotMigrated reports a database with pending migrations. Backends that
// refuse to serve such a database wrap it.
var ErrNotMigrated = errors.New("database schema is not migrated")

// Migration is one versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
	// Down reverses SQL; empty when HasDown is false.
	Down string
	// HasDown reports a NNNN_name.down.sql file for this migration.
	HasDown bool
}

const (
	suffix     = ".up.sql"
	downSuffix = ".down.sql"
)

// Load reads the migrations at the root of fsys, in version order. A file
// ending in .up.sql whose name is not NNNN_name.up.sql, or two files with one
// version, is an error.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		file := e.Name()
		if e.IsDir() || !strings.HasSuffix(file, suffix) {
			continue
		}
		m, err := parseName(file)
		if err != nil {
			return nil, err
		}
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", file, err)
		}
		m.SQL = string(b)
		downFile := strings.TrimSuffix(file, suffix) + downSuffix
		switch d, err := fs.ReadFile(fsys, downFile); {
		case err == nil:
			m.Down, m.HasDown = string(d), true
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("read migration %s: %w", downFile, err)
		}
		ms = append(ms, m)
	}
	if err := orphanDowns(entries); err != nil {
		return nil, err
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("load migrations: version %d appears twice (%s, %s)",
				ms[i].Version, ms[i-1].Name, ms[i].Name)
		}
	}
	return ms, nil
}

// parseName parses "0001_init.up.sql" into version 1, name "init".
func parseName(file string) (Migration, error) {
	base := strings.TrimSuffix(path.Base(file), suffix)
	num, name, ok := strings.Cut(base, "_")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v <= 0 || name == "" {
		return Migration{}, fmt.Errorf("load migration %s: name must be NNNN_name%s with NNNN > 0", file, suffix)
	}
	return Migration{Version: v, Name: name}, nil
}

// orphanDowns reports a .down.sql file without its .up.sql, a typo that
// would otherwise leave its migration silently irreversible.
func orphanDowns(entries []fs.DirEntry) error {
	ups := map[string]bool{}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), suffix); ok {
			ups[n] = true
		}
	}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), downSuffix); ok && !e.IsDir() && !ups[n] {
			return fmt.Errorf("load migrations: %s has no %s%s", e.Name(), n, suffix)
		}
	}
	return nil
}
