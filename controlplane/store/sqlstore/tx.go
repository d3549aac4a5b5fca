package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

var _ store.Tx = (*tx)(nil)

// InTx implements store.Store. fn runs in one transaction, committed when fn
// returns nil and rolled back otherwise; fn's error is returned unchanged.
// Begin and commit failures are classified like every other error, so a
// commit that loses a race is credential.ErrConflict or ErrUnavailable, never
// a driver error.
//
// With Dialect.ExecTx set, fn may run more than once. fn must use only the Tx
// it is given: calling the Store from inside fn can deadlock on a pool of one
// connection (SQLite's :memory:).
func (s *Store) InTx(ctx context.Context, fn func(store.Tx) error) error {
	const op = "run transaction"
	if s.closed.Load() {
		return closedError(op, "")
	}
	var fnErr error
	attempt := func(sqlTx *sql.Tx) error {
		fnErr = fn(&tx{s: s, tx: sqlTx})
		if fnErr == nil || (s.dialect.ExecTx == nil && s.dialect.Retryable == nil) {
			return fnErr
		}
		// Hand a retrying ExecTx the driver's error, which carries the code
		// it retries on (a serialization failure), not our classification.
		var oe *opError
		if errors.As(fnErr, &oe) && oe.cause != nil {
			return oe.cause
		}
		return fnErr
	}
	var err error
	switch {
	case s.dialect.ExecTx != nil:
		err = s.dialect.ExecTx(ctx, s.db, attempt)
	case s.dialect.Retryable != nil:
		err = s.retryTx(ctx, attempt, &fnErr)
	default:
		err = s.execTx(ctx, attempt)
	}
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		// The last attempt of fn failed, so err is fn's (ExecTx gives up
		// with fn's error, and nothing commits after a failed fn).
		return fnErr
	}
	return s.fail(ctx, err, op, "")
}

// RetryAttempts bounds the attempts of a transaction that keeps failing
// with a retryable error; the backoff between them grows from 2 ms to about
// 100 ms, jittered, so the whole retry costs well under a second.
const RetryAttempts = 8

// retryTx runs fn in a transaction, again while it fails with an error the
// Dialect calls retryable (from fn or from the commit). *fnErr is reset
// before each attempt so that InTx reports the last attempt's outcome.
func (s *Store) retryTx(ctx context.Context, fn func(*sql.Tx) error, fnErr *error) error {
	backoff := 2 * time.Millisecond
	for attempt := 1; ; attempt++ {
		*fnErr = nil
		err := s.execTx(ctx, fn)
		if err == nil || attempt == RetryAttempts || !s.dialect.Retryable(err) {
			return err
		}
		sleep := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// execTx is the one-attempt transaction used when the Dialect has no ExecTx.
func (s *Store) execTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = t.Rollback() // also when fn panics; the cause is err or the panic
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	committed = true
	return t.Commit()
}

// tx implements store.Tx over one *sql.Tx. It must not be used after InTx's
// fn returns.
type tx struct {
	s  *Store
	tx *sql.Tx
}

// GetKey implements store.Reader, locking the row with Dialect.LockRow.
func (t *tx) GetKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error) {
	var r keyRow
	err := t.tx.QueryRowContext(ctx, t.s.q.getKeyForUpdate, string(tenant), int64(kind), string(id)).Scan(r.dest(false)...)
	if err != nil {
		return credential.Key{}, t.s.fail(ctx, err, "get key", id)
	}
	k, err := r.key(tenant, kind, id)
	if err != nil {
		return credential.Key{}, &opError{op: "get key", id: id, cause: err}
	}
	return k, nil
}

// CreateKey implements store.Tx.
func (t *tx) CreateKey(ctx context.Context, k credential.Key) error {
	const op = "create key"
	values, err := keyValues(&k)
	if err != nil {
		return &opError{op: op, id: k.ID, kind: credential.ErrInvalidArgument, cause: err}
	}
	args := append([]any{string(k.Tenant), int64(k.Kind), string(k.ID)}, values...)
	if _, err := t.tx.ExecContext(ctx, t.s.q.insertKey, args...); err != nil {
		return t.s.fail(ctx, err, op, k.ID)
	}
	return nil
}

// UpdateKey implements store.Tx. It writes every field of k except the
// identity, CreateTime, RequestID and LastUsedTime (TouchLastUsed's).
//
// It relies on the driver reporting matched rows, not changed rows, as
// affected (MySQL needs clientFoundRows=true).
func (t *tx) UpdateKey(ctx context.Context, k credential.Key) error {
	const op = "update key"
	v, err := keyValues(&k)
	if err != nil {
		return &opError{op: op, id: k.ID, kind: credential.ErrInvalidArgument, cause: err}
	}
	// v is in keyColumns order; updateKey skips create_time (12),
	// last_used_time (15) and request_id (16).
	args := make([]any, 0, 21)
	args = append(args, v[0:12]...)
	args = append(args, v[13:15]...)
	args = append(args, v[17:21]...)
	args = append(args, string(k.Tenant), int64(k.Kind), string(k.ID))
	return t.execOne(ctx, op, k.ID, t.s.q.updateKey, args...)
}

// DeleteKey implements store.Tx.
func (t *tx) DeleteKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) error {
	return t.execOne(ctx, "delete key", id, t.s.q.deleteKey, string(tenant), int64(kind), string(id))
}

// execOne runs a statement that must affect exactly one row, or none for
// credential.ErrNotFound.
func (t *tx) execOne(ctx context.Context, op string, id credential.KeyID, q string, args ...any) error {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return t.s.fail(ctx, err, op, id)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return t.s.fail(ctx, err, op, id)
	}
	if n == 0 {
		return &opError{op: op, id: id, kind: credential.ErrNotFound}
	}
	return nil
}

// AppendEvent implements store.Tx. e.Seq is ignored: the database assigns it.
func (t *tx) AppendEvent(ctx context.Context, e credential.Event) error {
	const op = "append event for key"
	if l := t.s.dialect.LockEvents; l != "" {
		if _, err := t.tx.ExecContext(ctx, l); err != nil {
			return t.s.fail(ctx, err, op, e.KeyID)
		}
	}
	_, err := t.tx.ExecContext(ctx, t.s.q.insertEvent,
		string(e.Tenant), int64(e.Kind), string(e.KeyID), int64(e.Type), toMicros(e.Time))
	if err != nil {
		return t.s.fail(ctx, err, op, e.KeyID)
	}
	return nil
}
