package storetest

import (
	"crypto/sha512"
	"encoding/hex"
	"testing"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// testTenantIsolation: tenant B cannot read, list, update, revoke, rotate or
// delete A's keys, and the same key ID lives in both tenants independently.
func testTenantIsolation(t *testing.T, s store.Store) {
	a, b := newTenant(), newTenant()
	ka := fullKey(a, credential.KindIssued, "shared-id")
	mustCreate(t, s, ka)
	checkHidden(t, s, b, ka.Kind, ka)
	diffKey(t, "A's key after B's attempts", ka, mustGet(t, s, a, ka.Kind, ka.ID))

	kb := fullKey(b, credential.KindIssued, "shared-id")
	kb.Name = "B's key"
	mustCreate(t, s, kb)
	diffKey(t, "A's key", ka, mustGet(t, s, a, ka.Kind, ka.ID))
	diffKey(t, "B's key", kb, mustGet(t, s, b, kb.Kind, kb.ID))
}

// testKindIsolation: an issued and an imported key never see each other.
func testKindIsolation(t *testing.T, s store.Store) {
	tenant := newTenant()
	issued := fullKey(tenant, credential.KindIssued, "same-id")
	checkHidden(t, s, tenant, credential.KindImported, issued)

	imported := fullKey(tenant, credential.KindImported, "same-id")
	imported.Name = "imported"
	mustCreate(t, s, imported)
	diffKey(t, "issued key", issued, mustGet(t, s, tenant, issued.Kind, issued.ID))
	diffKey(t, "imported key", imported, mustGet(t, s, tenant, imported.Kind, imported.ID))
}

// checkHidden creates k unless it exists, then checks that every operation
// made as (tenant, kind) misses it and leaves it unchanged.
func checkHidden(t *testing.T, s store.Store, tenant credential.Tenant, kind credential.Kind, k credential.Key) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.GetKey(ctx, k.Tenant, k.Kind, k.ID); err != nil {
		mustCreate(t, s, k)
	}
	_, err := s.GetKey(ctx, tenant, kind, k.ID)
	wantErr(t, "GetKey", err, credential.ErrNotFound)
	_, err = s.FindByRequestID(ctx, tenant, kind, k.RequestID)
	wantErr(t, "FindByRequestID", err, credential.ErrNotFound)
	if got, err := s.GetKeys(ctx, tenant, kind, []credential.KeyID{k.ID}); err != nil || len(got) != 0 {
		t.Errorf("GetKeys = %v, %v; want none", ids(got), err)
	}
	if got, err := s.ListKeys(ctx, tenant, kind, store.Filter{Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("ListKeys = %v, %v; want none", ids(got), err)
	}
	if got, err := s.ListKeys(ctx, tenant, kind, store.Filter{ActorID: k.ActorID, Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("ListKeys by actor = %v, %v; want none", ids(got), err)
	}
	err = s.InTx(ctx, func(tx store.Tx) error {
		_, err := tx.GetKey(ctx, tenant, kind, k.ID)
		return err
	})
	wantErr(t, "Tx.GetKey", err, credential.ErrNotFound)
	revoke := k
	revoke.Tenant, revoke.Kind, revoke.Status = tenant, kind, credential.StateRevoked
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateKey(ctx, revoke) })
	wantErr(t, "UpdateKey (revoke)", err, credential.ErrNotFound)
	rotate := k
	rotate.Tenant, rotate.Kind, rotate.SupersededBy = tenant, kind, "new"
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateKey(ctx, rotate) })
	wantErr(t, "UpdateKey (rotate)", err, credential.ErrNotFound)
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.DeleteKey(ctx, tenant, kind, k.ID) })
	wantErr(t, "DeleteKey", err, credential.ErrNotFound)
	if err := s.TouchLastUsed(ctx, tenant, kind, []credential.KeyID{k.ID}, base.AddDate(1, 0, 0)); err != nil {
		t.Errorf("TouchLastUsed: %v", err)
	}
	diffKey(t, "key after the other tenant's or kind's calls", k, mustGet(t, s, k.Tenant, k.Kind, k.ID))
}

// testImportedKey: imported keys are found by their tenant-bound hash, which
// is their ID, and carry no issued-key fields.
func testImportedKey(t *testing.T, s store.Store) {
	tenant := newTenant()
	sum := sha512.Sum512_256([]byte(string(tenant) + "\x00" + "sk_live_imported_secret"))
	k := minimalKey(tenant, credential.KindImported, credential.KeyID(hex.EncodeToString(sum[:])))
	k.Scopes = []string{"payments:read"}
	mustCreate(t, s, k)
	diffKey(t, "GetKey by hash", k, mustGet(t, s, tenant, credential.KindImported, k.ID))
	_, err := s.GetKey(t.Context(), tenant, credential.KindIssued, k.ID)
	wantErr(t, "GetKey as an issued key", err, credential.ErrNotFound)
}
