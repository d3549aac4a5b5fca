// Package store declares the storage port of the control plane: the Store and
// Tx contracts every backend implements, and the Filter type lists take.
//
// Contracts every implementation keeps (proved by storetest):
//   - every method takes the tenant explicitly and never sees another tenant's rows;
//   - driver errors never escape: no rows is credential.ErrNotFound, a unique
//     violation is credential.ErrConflict, connection failures wrap
//     credential.ErrUnavailable and timeouts credential.ErrDeadlineExceeded;
//   - timestamps go in and come out as UTC with microsecond precision;
//   - a cancelled context makes a call return promptly with an error.
//
// Stores hold no business rules: the keys service decides, stores persist.
// This package imports only pkg/credential.
package store

import (
	"context"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// Filter narrows a list. Zero fields do not filter.
type Filter struct {
	ActorID string
	// Status filters on the persisted state (Active or Revoked). Expired keys
	// are persisted as active; the service filters expiry itself.
	Status credential.State
	// After is the keyset cursor: only keys whose ID sorts after it.
	After credential.KeyID
	// Limit caps the number of keys returned; it must be positive.
	Limit int
}

// Reader holds the read operations shared by Store and Tx.
type Reader interface {
	// GetKey returns the key or credential.ErrNotFound. Inside a Tx the row is
	// locked for update until the transaction ends.
	GetKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error)
}

// Store is the control plane's storage. Implementations are safe for
// concurrent use.
type Store interface {
	Reader
	// GetKeys returns the keys among ids that exist, in no particular order,
	// with one query. Missing IDs are simply absent.
	GetKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID) ([]credential.Key, error)
	// FindByRequestID returns the key created with the idempotency key
	// requestID, or credential.ErrNotFound.
	FindByRequestID(ctx context.Context, tenant credential.Tenant, kind credential.Kind, requestID string) (credential.Key, error)
	// ListKeys returns up to f.Limit keys ordered by ID ascending, starting
	// after f.After. The slice is owned by the caller.
	ListKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, f Filter) ([]credential.Key, error)
	// TouchLastUsed records that keys were used at t; best effort.
	TouchLastUsed(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID, t time.Time) error

	// InTx runs fn in one transaction, committing when fn returns nil and
	// rolling back otherwise. fn's error is returned unchanged. fn may be
	// retried on serialization failures, so it must not have side effects
	// outside the Tx.
	InTx(ctx context.Context, fn func(tx Tx) error) error

	// ListSigningKeys returns the tenant's derived-token signing keys,
	// ordered by Generation ascending. The slice is owned by the caller.
	ListSigningKeys(ctx context.Context, tenant credential.Tenant) ([]SigningKey, error)

	// EventsSince returns up to limit outbox events with Seq > cursor, in Seq
	// order.
	EventsSince(ctx context.Context, cursor int64, limit int) ([]credential.Event, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close() error
}

// Tx is one transaction. It must not be used after InTx's fn returns.
type Tx interface {
	Reader
	// CreateKey inserts k. A duplicate (tenant, kind, ID) or (tenant, kind,
	// RequestID) is credential.ErrConflict.
	CreateKey(ctx context.Context, k credential.Key) error
	// UpdateKey replaces the stored key (identified by tenant, kind and ID)
	// with k, except its identity, CreateTime, RequestID and LastUsedTime
	// (which only TouchLastUsed moves, never backwards, so an update built
	// from an older read cannot roll it back). Returns credential.ErrNotFound
	// when there is no such key.
	UpdateKey(ctx context.Context, k credential.Key) error
	// DeleteKey removes the key or returns credential.ErrNotFound.
	DeleteKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) error
	// AppendEvent writes e to the outbox; Seq is assigned by the store.
	AppendEvent(ctx context.Context, e credential.Event) error
	// CreateSigningKey inserts k. A duplicate (tenant, Generation) or
	// (tenant, ID) is credential.ErrConflict, which is how concurrent
	// replicas agree on one key per generation.
	CreateSigningKey(ctx context.Context, k SigningKey) error
	// RetireSigningKey sets the NotAfter of the key of that generation, or
	// returns credential.ErrNotFound.
	RetireSigningKey(ctx context.Context, tenant credential.Tenant, generation int64, notAfter time.Time) error
}

// SigningKey is a stored derived-token signing key. The private key is
// Sealed (encrypted) by the caller; the store never sees it in the clear.
type SigningKey struct {
	Tenant credential.Tenant
	// Generation orders keys: the current key is the newest one that is not
	// retired. Generation 1 is the first key of a tenant.
	Generation int64
	ID         string // the JWK key ID ("kid")
	Algorithm  string // EdDSA, RS256 or ES256
	Sealed     []byte
	CreateTime time.Time
	// NotAfter is zero for a key in service; once set, the key signs nothing
	// and is published only until then.
	NotAfter time.Time
}
