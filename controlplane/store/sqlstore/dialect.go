package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// Placeholder is how a database writes bind parameters.
type Placeholder uint8

const (
	// Question writes every parameter as ? (SQLite, MySQL).
	Question Placeholder = iota
	// Dollar numbers parameters $1, $2, … (PostgreSQL, CockroachDB).
	Dollar
)

// Dialect is everything that differs between databases. The zero value is a
// usable dialect for a database that takes ? placeholders, needs no row locks
// and whose errors are classified only generically (context, no rows, broken
// connections); real backends set Classify.
//
// A Dialect is a plain value: copy it and change a field to derive another
// (CockroachDB is PostgreSQL plus ExecTx).
type Dialect struct {
	// Name names the database in error messages ("sqlite", "postgres").
	Name string

	// Placeholder is the bind-parameter style. Queries are written with ? and
	// rewritten once, when New prepares them.
	Placeholder Placeholder

	// LockRow is appended to the row read of Tx.GetKey so that the row stays
	// locked until the transaction ends: " FOR UPDATE" on PostgreSQL, MySQL
	// and CockroachDB. It is empty on SQLite, whose write transactions start
	// with BEGIN IMMEDIATE and so already hold the database's write lock
	// before their first read.
	LockRow string

	// Classify maps a driver error to the credential sentinel its code
	// stands for, or returns nil when it does not recognise the error. It
	// must decide by code (SQLSTATE, MySQL error number, SQLite result
	// code), never by message text:
	//   - unique violation: credential.ErrConflict;
	//   - busy, locked, connection refused or lost, out of resources, a
	//     serialization failure left after retries: credential.ErrUnavailable;
	//   - a statement or lock timeout: credential.ErrDeadlineExceeded.
	// Context errors, sql.ErrNoRows, sql.ErrConnDone, driver.ErrBadConn and
	// net.Error are handled before and after it, so Classify need not know
	// them. A nil Classify recognises nothing.
	Classify func(err error) error

	// ExecTx, when set, runs fn in a transaction it begins and commits
	// itself, retrying fn as it sees fit; cockroach-go's crdb.ExecuteTx has
	// this shape. It must return fn's error unchanged when it gives up.
	// The error fn hands it is the driver's own, not the classified one the
	// Tx methods return to their caller, so that it can recognise a
	// retryable code; InTx still returns the classified error to its caller.
	// Nil means one attempt: begin, fn, then commit or roll back.
	ExecTx func(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error

	// Retryable, when set, reports whether a driver error means the whole
	// transaction may simply be run again: a serialization failure, a
	// deadlock, a lock wait timeout (SQLSTATE 40001/40P01, MySQL 1213/1205).
	// InTx then retries fn with bounded, jittered backoff (see
	// RetryAttempts). It is not used when ExecTx is set, which retries
	// itself.
	Retryable func(err error) bool

	// LockEvents, when set, is executed in the transaction before each event
	// is appended, to make event sequence order equal commit order. Outbox
	// tailers read events in seq order with a cursor, so a transaction that
	// takes seq 7 but commits after the one that took seq 8 would be skipped.
	// PostgreSQL and MySQL assign sequences at insert, not commit, and need
	// a transaction-scoped lock here (for example
	// "SELECT pg_advisory_xact_lock(…)"); SQLite serializes write
	// transactions already and leaves it empty.
	LockEvents string
}

// rebind rewrites the ? placeholders of q for d. Shared queries never contain
// a literal ?, so a plain scan is enough.
func (d Dialect) rebind(q string) string {
	if d.Placeholder != Dollar || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
