package storetest

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

func testKeyRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "key-1")
	mustCreate(t, s, k)

	diffKey(t, "GetKey", k, mustGet(t, s, tenant, k.Kind, k.ID))
	err := s.InTx(ctx, func(tx store.Tx) error {
		got, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
		diffKey(t, "Tx.GetKey", k, got)
		return err
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	got, err := s.FindByRequestID(ctx, tenant, k.Kind, k.RequestID)
	if err != nil {
		t.Fatalf("FindByRequestID: %v", err)
	}
	diffKey(t, "FindByRequestID", k, got)
	list, err := s.ListKeys(ctx, tenant, k.Kind, store.Filter{Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("ListKeys = %d keys, %v; want 1", len(list), err)
	}
	diffKey(t, "ListKeys", k, list[0])
	batch, err := s.GetKeys(ctx, tenant, k.Kind, []credential.KeyID{k.ID})
	if err != nil || len(batch) != 1 {
		t.Fatalf("GetKeys = %d keys, %v; want 1", len(batch), err)
	}
	diffKey(t, "GetKeys", k, batch[0])

	// Every mutable field changes. CreateTime and RequestID are immutable,
	// and LastUsedTime belongs to TouchLastUsed: UpdateKey keeps them.
	u := k
	u.Name = "renamed"
	u.ActorID = "service:deployer"
	u.Scopes = []string{"keys:admin"}
	u.Metadata = json.RawMessage(`{"team":"security"}`)
	u.Status = credential.StateRevoked
	u.Visibility = credential.VisibilityPublic
	u.RatePolicy = &credential.RatePolicy{Quota: 5, Window: 1500 * time.Millisecond, Unit: "token"}
	u.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	u.RevocationReason = credential.ReasonKeyCompromise
	u.RevocationDescription = "leaked in a public repository"
	u.UpdateTime = base.Add(48 * time.Hour)
	u.ExpireTime = base.Add(30 * 24 * time.Hour)
	u.Prefix = "talos_pub"
	u.Version = "v1"
	u.SecretHash = []byte{9, 9, 9}
	u.SupersededBy = "key-2"
	update := u
	update.CreateTime = base.Add(-time.Hour)
	update.RequestID = "req-other"
	update.LastUsedTime = time.Time{}
	mustUpdate(t, s, update)
	diffKey(t, "GetKey after UpdateKey", u, mustGet(t, s, tenant, k.Kind, k.ID))

	err = s.InTx(ctx, func(tx store.Tx) error { return tx.DeleteKey(ctx, tenant, k.Kind, k.ID) })
	if err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	_, err = s.GetKey(ctx, tenant, k.Kind, k.ID)
	wantErr(t, "GetKey after DeleteKey", err, credential.ErrNotFound)
	_, err = s.FindByRequestID(ctx, tenant, k.Kind, k.RequestID)
	wantErr(t, "FindByRequestID after DeleteKey", err, credential.ErrNotFound)
}

func testMinimalKeyRoundTrip(t *testing.T, s store.Store) {
	tenant := newTenant()
	k := minimalKey(tenant, credential.KindIssued, "minimal")
	mustCreate(t, s, k)
	// No equateEmpty: absent optional fields come back nil and zero.
	diffKey(t, "GetKey", k, mustGet(t, s, tenant, k.Kind, k.ID))

	// An empty object and empty slices read back as their nil forms.
	e := minimalKey(tenant, credential.KindIssued, "empty")
	e.Metadata = json.RawMessage(`{}`)
	e.Scopes = []string{}
	e.AllowedCIDRs = []netip.Prefix{}
	e.SecretHash = []byte{}
	mustCreate(t, s, e)
	diffKey(t, "GetKey of empty fields", minimalKey(tenant, credential.KindIssued, "empty"), mustGet(t, s, tenant, e.Kind, e.ID))
}

func testUpdateClears(t *testing.T, s store.Store) {
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "clear-me")
	mustCreate(t, s, k)
	u := minimalKey(tenant, k.Kind, k.ID)
	mustUpdate(t, s, u)
	want := u
	want.RequestID, want.LastUsedTime = k.RequestID, k.LastUsedTime // kept by UpdateKey
	diffKey(t, "GetKey", want, mustGet(t, s, tenant, k.Kind, k.ID))
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	const kind = credential.KindIssued
	_, err := s.GetKey(ctx, tenant, kind, "missing")
	wantErr(t, "GetKey", err, credential.ErrNotFound)
	_, err = s.FindByRequestID(ctx, tenant, kind, "missing")
	wantErr(t, "FindByRequestID", err, credential.ErrNotFound)
	_, err = s.FindByRequestID(ctx, tenant, kind, "")
	wantErr(t, "FindByRequestID of empty request id", err, credential.ErrNotFound)
	err = s.InTx(ctx, func(tx store.Tx) error {
		_, err := tx.GetKey(ctx, tenant, kind, "missing")
		return err
	})
	wantErr(t, "Tx.GetKey", err, credential.ErrNotFound)
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateKey(ctx, minimalKey(tenant, kind, "missing")) })
	wantErr(t, "UpdateKey", err, credential.ErrNotFound)
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.DeleteKey(ctx, tenant, kind, "missing") })
	wantErr(t, "DeleteKey", err, credential.ErrNotFound)
}

func testConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "dup")
	mustCreate(t, s, k)

	again := minimalKey(tenant, k.Kind, k.ID)
	again.Name = "second"
	err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, again) })
	wantErr(t, "CreateKey of an existing ID", err, credential.ErrConflict)
	diffKey(t, "GetKey after the conflict", k, mustGet(t, s, tenant, k.Kind, k.ID))

	// Keys without a request ID never conflict on it.
	mustCreate(t, s, minimalKey(tenant, k.Kind, "no-req-1"), minimalKey(tenant, k.Kind, "no-req-2"))
}

func testIdempotentCreate(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	first := fullKey(tenant, credential.KindIssued, "first")
	first.RequestID = "req-once"
	mustCreate(t, s, first)

	retry := fullKey(tenant, credential.KindIssued, "retry")
	retry.RequestID = first.RequestID
	err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, retry) })
	wantErr(t, "CreateKey of a used request ID", err, credential.ErrConflict)

	got, err := s.FindByRequestID(ctx, tenant, first.Kind, first.RequestID)
	if err != nil {
		t.Fatalf("FindByRequestID: %v", err)
	}
	diffKey(t, "FindByRequestID", first, got)
	_, err = s.GetKey(ctx, tenant, retry.Kind, retry.ID)
	wantErr(t, "GetKey of the rejected retry", err, credential.ErrNotFound)

	// Request IDs are scoped to the tenant and the kind.
	other := fullKey(newTenant(), credential.KindIssued, "first")
	other.RequestID = first.RequestID
	imported := fullKey(tenant, credential.KindImported, "imported")
	imported.RequestID = first.RequestID
	mustCreate(t, s, other, imported)
}

func testLargeMetadata(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "large")
	blob := make([]byte, 64<<10)
	for i := range blob {
		blob[i] = 'a' + byte(i%26)
	}
	k.Metadata = json.RawMessage(`{"blob":"` + string(blob) + `"}`)
	mustCreate(t, s, k)

	diffKey(t, "GetKey", k, mustGet(t, s, tenant, k.Kind, k.ID))
	list, err := s.ListKeys(ctx, tenant, k.Kind, store.Filter{Limit: 1})
	if err != nil || len(list) != 1 {
		t.Fatalf("ListKeys = %d keys, %v; want 1", len(list), err)
	}
	diffKey(t, "ListKeys", k, list[0])
	err = s.InTx(ctx, func(tx store.Tx) error {
		got, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
		diffKey(t, "Tx.GetKey", k, got)
		return err
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func testTouchLastUsed(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant, other := newTenant(), newTenant()
	a := minimalKey(tenant, credential.KindIssued, "a")
	b := minimalKey(tenant, credential.KindIssued, "b")
	c := minimalKey(tenant, credential.KindIssued, "c")
	o := minimalKey(other, credential.KindIssued, "a")
	mustCreate(t, s, a, b, c, o)

	at := base.Add(36 * time.Hour)
	if err := s.TouchLastUsed(ctx, tenant, credential.KindIssued, []credential.KeyID{"a", "b", "missing"}, at); err != nil {
		t.Fatalf("TouchLastUsed: %v", err)
	}
	if err := s.TouchLastUsed(ctx, tenant, credential.KindIssued, nil, at); err != nil {
		t.Fatalf("TouchLastUsed of no keys: %v", err)
	}
	for _, k := range []credential.Key{a, b} {
		want := k
		want.LastUsedTime = at
		diffKey(t, "GetKey of touched key", want, mustGet(t, s, tenant, k.Kind, k.ID))
	}
	diffKey(t, "GetKey of untouched key", c, mustGet(t, s, tenant, c.Kind, c.ID))
	diffKey(t, "GetKey of other tenant's key", o, mustGet(t, s, other, o.Kind, o.ID))

	// An update built from a read before the touch keeps the touch.
	a.Name = "renamed"
	mustUpdate(t, s, a)
	if got := mustGet(t, s, tenant, a.Kind, a.ID); !got.LastUsedTime.Equal(at) || got.Name != "renamed" {
		t.Errorf("after UpdateKey: LastUsedTime = %v, Name = %q; want %v, %q", got.LastUsedTime, got.Name, at, "renamed")
	}
}
