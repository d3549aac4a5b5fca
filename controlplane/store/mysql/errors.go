package mysql

import (
	"errors"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/talos-project/talos/pkg/credential"
)

// Server error numbers this package acts on. MySQL 8 and MariaDB share them
// unless noted.
const (
	errDupKey                = 1022
	errDupEntry              = 1062
	errDupEntryWithKeyName   = 1586
	errLockWaitTimeout       = 1205
	errLockDeadlock          = 1213
	errConCount              = 1040 // too many connections
	errOutOfResources        = 1041
	errBadDB                 = 1049 // the database is gone (dropped, not yet restored)
	errServerShutdown        = 1053
	errHostIsBlocked         = 1129
	errNoSuchTable           = 1146
	errNetReadError          = 1158
	errNetReadInterrupted    = 1159
	errNetErrorOnWrite       = 1160
	errNetWriteInterrupted   = 1161
	errTooManyUserConns      = 1203
	errUserLimitReached      = 1226
	errOptionPrevents        = 1290 // read_only: a demoted primary
	errQueryInterrupted      = 1317 // KILL QUERY, or a server shutting down
	errReadOnlyTransaction   = 1792
	errReadOnlyMode          = 1836
	errConnectionKilled      = 1927 // MariaDB
	errStatementTimeout      = 1969 // MariaDB max_statement_time
	errQueryTimeout          = 3024 // MySQL max_execution_time
	errClientInteractTimeout = 4031 // MySQL 8.0.24+: closed after wait_timeout
)

// classify is the Dialect's Classify: MySQL error numbers, and the driver's
// own broken-connection errors, to sentinels.
//
// Error 1317 (query interrupted) is ErrUnavailable, not a deadline: this
// package never sets a server-side statement timeout, and the driver ends a
// call whose context is done by closing the connection, so a 1317 while the
// context is live means someone else (KILL QUERY, a shutdown) stopped the
// statement. The server's own statement timeouts are 3024 and 1969.
func classify(err error) error {
	var me *mysqldriver.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case errDupEntry, errDupKey, errDupEntryWithKeyName:
			return credential.ErrConflict
		case errLockDeadlock, errLockWaitTimeout, // left after sqlstore's retries
			errConCount, errTooManyUserConns, errUserLimitReached, errHostIsBlocked,
			errOutOfResources, errBadDB, errServerShutdown, errConnectionKilled,
			errClientInteractTimeout, errQueryInterrupted,
			errNetReadError, errNetReadInterrupted, errNetErrorOnWrite, errNetWriteInterrupted,
			errOptionPrevents, errReadOnlyTransaction, errReadOnlyMode:
			return credential.ErrUnavailable
		case errQueryTimeout, errStatementTimeout:
			return credential.ErrDeadlineExceeded
		}
		return nil
	}
	// A connection lost mid-call (the driver logs "unexpected EOF" and
	// returns ErrInvalidConn) or out of step with the server. Dial failures
	// are net.Errors, and driver.ErrBadConn is recognised by sqlstore.
	switch {
	case errors.Is(err, mysqldriver.ErrInvalidConn),
		errors.Is(err, mysqldriver.ErrMalformPkt),
		errors.Is(err, mysqldriver.ErrPktSync),
		errors.Is(err, mysqldriver.ErrPktSyncMul),
		errors.Is(err, mysqldriver.ErrBusyBuffer):
		return credential.ErrUnavailable
	}
	return nil
}

// retryable is the Dialect's Retryable: a deadlock, after which InnoDB has
// rolled the transaction back, and a lock wait timeout, after which sqlstore
// rolls it back, both leave nothing behind, so the transaction can run again.
func retryable(err error) bool {
	var me *mysqldriver.MySQLError
	return errors.As(err, &me) && (me.Number == errLockDeadlock || me.Number == errLockWaitTimeout)
}
