package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

var _ store.Store = (*Store)(nil)

// Store implements store.Store over a *sql.DB whose schema is migrated. It is
// safe for concurrent use; the zero value is not usable, call New.
//
// Every error wraps exactly one credential sentinel, chosen by code:
// credential.ErrNotFound for a missing key, credential.ErrConflict for a
// duplicate, credential.ErrUnavailable for a dead, busy or closed database and
// for a cancelled context (which it also wraps), credential.ErrDeadlineExceeded
// for an expired deadline (likewise), and credential.ErrInvalidArgument for an
// argument the port forbids. Errors that fit none (a corrupt row) wrap no
// sentinel. No error unwraps to a driver type.
//
// Returned keys and slices are owned by the caller.
type Store struct {
	db      *sql.DB
	dialect Dialect
	q       queries
	getKey  *sql.Stmt // the verify query, prepared once
	closed  atomic.Bool
}

// New returns a Store over db, which must hold the api_keys and events tables,
// and prepares the verify statement. The Store owns db from then on: Close
// closes it, and callers must not close it themselves. On error db is left
// open.
func New(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{db: db, dialect: d, q: newQueries(d)}
	stmt, err := db.PrepareContext(ctx, s.q.getKey)
	if err != nil {
		return nil, s.fail(ctx, err, "prepare get key", "")
	}
	s.getKey = stmt
	return s, nil
}

// GetKey implements store.Reader: the verify query. It runs the statement New
// prepared, selects only the columns a Key needs, and decodes scopes and CIDRs
// without encoding/json in the usual case.
func (s *Store) GetKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error) {
	if s.closed.Load() {
		return credential.Key{}, closedError("get key", id)
	}
	var r keyRow
	if err := s.getKey.QueryRowContext(ctx, string(tenant), int64(kind), string(id)).Scan(r.dest(false)...); err != nil {
		return credential.Key{}, s.fail(ctx, err, "get key", id)
	}
	k, err := r.key(tenant, kind, id)
	if err != nil {
		return credential.Key{}, &opError{op: "get key", id: id, cause: err}
	}
	return k, nil
}

// GetKeys implements store.Store with one query per 1000 IDs.
func (s *Store) GetKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID) ([]credential.Key, error) {
	if s.closed.Load() {
		return nil, closedError("get keys", "")
	}
	keys := make([]credential.Key, 0, len(ids))
	for chunk := range chunks(ids) {
		q := s.dialect.rebind(`SELECT key_id, ` + keyColumns +
			` FROM api_keys WHERE nid = ? AND kind = ? AND key_id IN (` + inList(len(chunk)) + `)`)
		args := make([]any, 0, 2+len(chunk))
		args = append(args, string(tenant), int64(kind))
		for _, id := range chunk {
			args = append(args, string(id))
		}
		var err error
		if keys, err = s.queryKeys(ctx, keys, "get keys", tenant, kind, q, args...); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// FindByRequestID implements store.Store. An empty requestID matches nothing.
func (s *Store) FindByRequestID(ctx context.Context, tenant credential.Tenant, kind credential.Kind, requestID string) (credential.Key, error) {
	const op = "find key by request id"
	if s.closed.Load() {
		return credential.Key{}, closedError(op, "")
	}
	if requestID == "" {
		return credential.Key{}, &opError{op: op, kind: credential.ErrNotFound}
	}
	var r keyRow
	err := s.db.QueryRowContext(ctx, s.q.getKeyByRequestID, string(tenant), int64(kind), requestID).Scan(r.dest(true)...)
	if err != nil {
		return credential.Key{}, s.fail(ctx, err, op, "")
	}
	k, err := r.key(tenant, kind, credential.KeyID(r.id))
	if err != nil {
		return credential.Key{}, &opError{op: op, id: k.ID, cause: err}
	}
	return k, nil
}

// ListKeys implements store.Store with keyset pagination. A non-positive
// f.Limit is credential.ErrInvalidArgument.
func (s *Store) ListKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, f store.Filter) ([]credential.Key, error) {
	const op = "list keys"
	if s.closed.Load() {
		return nil, closedError(op, "")
	}
	if f.Limit <= 0 {
		return nil, invalid(op, "limit must be positive")
	}
	args := make([]any, 0, 6)
	args = append(args, string(tenant), int64(kind))
	if f.ActorID != "" {
		args = append(args, f.ActorID)
	}
	if f.Status != 0 {
		args = append(args, int64(f.Status))
	}
	args = append(args, string(f.After), f.Limit)
	return s.queryKeys(ctx, make([]credential.Key, 0, min(f.Limit, 128)), op, tenant, kind, s.q.list[listVariant(f)], args...)
}

// queryKeys appends to keys the rows of q, which selects key_id then
// keyColumns.
func (s *Store) queryKeys(ctx context.Context, keys []credential.Key, op string, tenant credential.Tenant, kind credential.Kind, q string, args ...any) ([]credential.Key, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail(ctx, err, op, "")
	}
	defer rows.Close()
	var r keyRow
	dest := r.dest(true)
	for rows.Next() {
		r.secretHash = nil
		if err := rows.Scan(dest...); err != nil {
			return nil, s.fail(ctx, err, op, "")
		}
		k, err := r.key(tenant, kind, credential.KeyID(r.id))
		if err != nil {
			return nil, &opError{op: op, id: k.ID, cause: err}
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, err, op, "")
	}
	return keys, nil
}

// TouchLastUsed implements store.Store. It never moves a key's last-used time
// backwards, and ignores IDs that do not exist.
func (s *Store) TouchLastUsed(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID, t time.Time) error {
	const op = "touch last used"
	if s.closed.Load() {
		return closedError(op, "")
	}
	us := toMicros(t)
	for chunk := range chunks(ids) {
		q := s.dialect.rebind(`UPDATE api_keys SET last_used_time = ? WHERE nid = ? AND kind = ? AND key_id IN (` +
			inList(len(chunk)) + `) AND (last_used_time IS NULL OR last_used_time < ?)`)
		args := make([]any, 0, 4+len(chunk))
		args = append(args, us, string(tenant), int64(kind))
		for _, id := range chunk {
			args = append(args, string(id))
		}
		args = append(args, us)
		if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
			return s.fail(ctx, err, op, "")
		}
	}
	return nil
}

// EventsSince implements store.Store. It reads every tenant's events: the
// outbox is one stream. A non-positive limit is credential.ErrInvalidArgument.
func (s *Store) EventsSince(ctx context.Context, cursor int64, limit int) ([]credential.Event, error) {
	const op = "read events"
	if s.closed.Load() {
		return nil, closedError(op, "")
	}
	if limit <= 0 {
		return nil, invalid(op, "limit must be positive")
	}
	rows, err := s.db.QueryContext(ctx, s.q.selectEvents, cursor, limit)
	if err != nil {
		return nil, s.fail(ctx, err, op, "")
	}
	defer rows.Close()
	var events []credential.Event
	for rows.Next() {
		var (
			e             credential.Event
			tenant, id    string
			kind, typ, at int64
		)
		if err := rows.Scan(&e.Seq, &tenant, &kind, &id, &typ, &at); err != nil {
			return nil, s.fail(ctx, err, op, "")
		}
		e.Tenant, e.Kind, e.KeyID = credential.Tenant(tenant), credential.Kind(kind), credential.KeyID(id)
		e.Type, e.Time = credential.EventType(typ), fromMicros(at)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, err, op, "")
	}
	return events, nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return closedError("ping database", "")
	}
	if err := s.db.PingContext(ctx); err != nil {
		return s.fail(ctx, err, "ping database", "")
	}
	return nil
}

// Close closes the database. Calls made after it return an error wrapping
// credential.ErrUnavailable; calls in flight may fail the same way. Closing
// twice is a no-op.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := errors.Join(s.getKey.Close(), s.db.Close())
	if err != nil {
		return fmt.Errorf("close %s database: %w", s.dialect.Name, err)
	}
	return nil
}

// chunks yields ids in slices of at most maxIDs.
func chunks(ids []credential.KeyID) func(yield func([]credential.KeyID) bool) {
	return func(yield func([]credential.KeyID) bool) {
		for len(ids) > 0 {
			n := min(len(ids), maxIDs)
			if !yield(ids[:n]) {
				return
			}
			ids = ids[n:]
		}
	}
}
