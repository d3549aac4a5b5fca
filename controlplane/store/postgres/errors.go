package postgres

import (
	"errors"
	"io"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/talos-project/talos/pkg/credential"
)

// classify is the Dialect's Classify: SQLSTATE codes (and the few pgx errors
// that have none) to sentinels. See
// https://www.postgresql.org/docs/current/errcodes-appendix.html.
func classify(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// Whatever refused the connection (network, authentication, a
		// database that is gone or starting up), the database is not there
		// for us; the cause stays in the message.
		return credential.ErrUnavailable
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return classifyCode(pe.Code)
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The server closed the connection in the middle of an exchange.
		return credential.ErrUnavailable
	case pgconn.SafeToRetry(err):
		// The connection failed before the statement was sent: it was
		// closed or broken already. (A context that ended first is the
		// caller's, and sqlstore classifies it by the context.)
		return credential.ErrUnavailable
	}
	return nil
}

// classifyCode maps one SQLSTATE.
func classifyCode(code string) error {
	switch code {
	case "23505": // unique_violation
		return credential.ErrConflict
	case "57014": // query_canceled: statement_timeout, or a cancel request
		return credential.ErrDeadlineExceeded
	case "55P03": // lock_not_available: lock_timeout, or NOWAIT
		return credential.ErrDeadlineExceeded
	case "22021", "22P05": // character_not_in_repertoire, untranslatable_character
		// A string PostgreSQL cannot store as text (a NUL byte, invalid
		// UTF-8): the argument, not the database, is at fault.
		return credential.ErrInvalidArgument
	case "25006": // read_only_sql_transaction: a standby, as after a failover
		return credential.ErrUnavailable
	case "25P03": // idle_in_transaction_session_timeout: the server ended the session
		return credential.ErrUnavailable
	case "CR000": // CockroachDB's former retryable-transaction code
		return credential.ErrUnavailable
	}
	if len(code) < 2 {
		return nil
	}
	switch code[:2] {
	case "08", // connection exception
		"28", // invalid authorization: the server refused us
		"40", // transaction rollback: serialization failure, deadlock (left after retries), unknown completion
		"53", // insufficient resources: disk full, out of memory, too many connections
		"57", // operator intervention: admin shutdown, crash shutdown, cannot connect now
		"58": // system error: I/O error
		return credential.ErrUnavailable
	}
	return nil
}

// retryable is the Dialect's Retryable: the whole transaction may simply run
// again after a serialization failure (40001) or a deadlock (40P01).
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "40001" || pe.Code == "40P01"
}
