package storetest

import (
	"context"
	"sync"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

var _ store.Store = (*FailingStore)(nil)

// FailingStore wraps a store.Store and, while a fault is set, fails every
// call but Close with it, without reaching the wrapped store (InTx does not
// run its function). It is for the tests of the store's consumers: a dead
// database is Failing(s, fmt.Errorf("…: %w", credential.ErrUnavailable)).
// It is safe for concurrent use.
type FailingStore struct {
	store.Store

	mu  sync.RWMutex
	err error
}

// Failing wraps s, failing every call with err until SetErr changes it; a
// nil err passes every call through.
func Failing(s store.Store, err error) *FailingStore {
	return &FailingStore{Store: s, err: err}
}

// SetErr sets the fault; nil clears it.
func (f *FailingStore) SetErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *FailingStore) fault() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.err
}

func (f *FailingStore) GetKey(ctx context.Context, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error) {
	if err := f.fault(); err != nil {
		return credential.Key{}, err
	}
	return f.Store.GetKey(ctx, tenant, kind, id)
}

func (f *FailingStore) GetKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID) ([]credential.Key, error) {
	if err := f.fault(); err != nil {
		return nil, err
	}
	return f.Store.GetKeys(ctx, tenant, kind, ids)
}

func (f *FailingStore) FindByRequestID(ctx context.Context, tenant credential.Tenant, kind credential.Kind, requestID string) (credential.Key, error) {
	if err := f.fault(); err != nil {
		return credential.Key{}, err
	}
	return f.Store.FindByRequestID(ctx, tenant, kind, requestID)
}

func (f *FailingStore) ListKeys(ctx context.Context, tenant credential.Tenant, kind credential.Kind, filter store.Filter) ([]credential.Key, error) {
	if err := f.fault(); err != nil {
		return nil, err
	}
	return f.Store.ListKeys(ctx, tenant, kind, filter)
}

func (f *FailingStore) TouchLastUsed(ctx context.Context, tenant credential.Tenant, kind credential.Kind, ids []credential.KeyID, t time.Time) error {
	if err := f.fault(); err != nil {
		return err
	}
	return f.Store.TouchLastUsed(ctx, tenant, kind, ids, t)
}

func (f *FailingStore) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := f.fault(); err != nil {
		return err
	}
	return f.Store.InTx(ctx, fn)
}

func (f *FailingStore) EventsSince(ctx context.Context, cursor int64, limit int) ([]credential.Event, error) {
	if err := f.fault(); err != nil {
		return nil, err
	}
	return f.Store.EventsSince(ctx, cursor, limit)
}

func (f *FailingStore) Ping(ctx context.Context) error {
	if err := f.fault(); err != nil {
		return err
	}
	return f.Store.Ping(ctx)
}

// ListSigningKeys implements store.Store.
func (f *FailingStore) ListSigningKeys(ctx context.Context, tenant credential.Tenant) ([]store.SigningKey, error) {
	if err := f.fault(); err != nil {
		return nil, err
	}
	return f.Store.ListSigningKeys(ctx, tenant)
}
