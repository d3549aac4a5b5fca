package sqlite

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/talos-project/talos/pkg/credential"
)

// classify is the Dialect's Classify: SQLite result codes to sentinels. The
// driver enables extended result codes, so a constraint failure says which
// constraint; the low byte is the primary code.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return credential.ErrConflict
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, // another writer held the lock past busy_timeout
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_READONLY:
		return credential.ErrUnavailable
	}
	// SQLITE_INTERRUPT means the call's context ended; sqlstore classifies
	// it by that context.
	return nil
}
