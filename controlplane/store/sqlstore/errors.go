package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"

	"github.com/talos-project/talos/pkg/credential"
)

// errClosed is the cause of every call made after Close. database/sql reports
// a closed pool only as an unexported message, so the Store tracks it itself.
var errClosed = errors.New("store is closed")

// opError is the error every Store and Tx method returns: the operation, the
// key it concerned, and the sentinel its cause was classified as. It unwraps to
// the sentinel and, for context errors, to the context error; it never unwraps
// to the driver error, whose text it keeps only for the message, so no driver
// type reaches the service layer.
type opError struct {
	op     string
	id     credential.KeyID // empty when the operation concerns no single key
	kind   error            // a credential sentinel, or nil when unclassified
	ctxErr error            // context.Canceled or context.DeadlineExceeded, or nil
	cause  error            // the original error, for the message and for Dialect.ExecTx
}

func (e *opError) Error() string {
	msg := e.op
	if e.id != "" {
		msg += " " + string(e.id)
	}
	if e.kind != nil {
		msg += ": " + e.kind.Error()
	}
	if e.ctxErr != nil {
		msg += ": " + e.ctxErr.Error()
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *opError) Unwrap() []error {
	switch {
	case e.kind != nil && e.ctxErr != nil:
		return []error{e.kind, e.ctxErr}
	case e.kind != nil:
		return []error{e.kind}
	case e.ctxErr != nil:
		return []error{e.ctxErr}
	}
	return nil
}

// fail classifies err, returned by the database during op on key id, into an
// *opError wrapping one credential sentinel:
//   - sql.ErrNoRows: credential.ErrNotFound;
//   - what the Dialect's Classify recognises by code, then a dead connection
//     (sql.ErrConnDone, driver.ErrBadConn, a net.Error): credential.ErrUnavailable,
//     or ErrDeadlineExceeded for a network timeout;
//   - while ctx is done, any error but a conflict or not-found (a statement
//     interrupted, a busy wait given up) is the context's:
//     context.DeadlineExceeded wrapped in credential.ErrDeadlineExceeded,
//     context.Canceled wrapped in credential.ErrUnavailable;
//   - any error after Close: credential.ErrUnavailable.
//
// Anything else is left unclassified, which the API maps to an internal error.
func (s *Store) fail(ctx context.Context, err error, op string, id credential.KeyID) error {
	e := &opError{op: op, id: id, cause: err}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		e.kind, e.cause = credential.ErrNotFound, nil
		return e
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.cause = nil
	default:
		e.kind = s.classify(err)
		if e.kind == credential.ErrConflict || e.kind == credential.ErrNotFound {
			return e
		}
	}
	ctxErr := ctx.Err()
	if ctxErr == nil {
		// The driver may report a context it was given (its own deadline
		// inside a pool wait, for one) although ctx itself is live.
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			ctxErr = context.DeadlineExceeded
		case errors.Is(err, context.Canceled):
			ctxErr = context.Canceled
		}
	}
	switch {
	case errors.Is(ctxErr, context.DeadlineExceeded):
		e.kind, e.ctxErr = credential.ErrDeadlineExceeded, context.DeadlineExceeded
	case ctxErr != nil:
		e.kind, e.ctxErr = credential.ErrUnavailable, ctxErr
	case e.kind == nil && s.closed.Load():
		e.kind = credential.ErrUnavailable
	}
	return e
}

// classify asks the Dialect, then recognises dead connections generically.
func (s *Store) classify(err error) error {
	if s.dialect.Classify != nil {
		if kind := s.dialect.Classify(err); kind != nil {
			return kind
		}
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return credential.ErrDeadlineExceeded
	case netErr != nil, errors.Is(err, sql.ErrConnDone), errors.Is(err, driver.ErrBadConn):
		return credential.ErrUnavailable
	}
	return nil
}

// closedError is the error of a call made after Close.
func closedError(op string, id credential.KeyID) error {
	return &opError{op: op, id: id, kind: credential.ErrUnavailable, cause: errClosed}
}

// invalid is the error of a call with an argument the port forbids.
func invalid(op, msg string) error {
	return &opError{op: op, kind: credential.ErrInvalidArgument, cause: errors.New(msg)}
}
