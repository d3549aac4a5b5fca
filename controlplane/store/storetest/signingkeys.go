package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	const tenantB credential.Tenant = "6f1c2b0e-8a4d-4e2f-9b1a-3c5d7e9f0a12"
	k1 := store.SigningKey{Tenant: credential.DefaultTenant, Generation: 1, ID: "kid-1", Algorithm: "EdDSA", Sealed: []byte{0, 1, 2, 255}, CreateTime: base}
	k2 := store.SigningKey{Tenant: credential.DefaultTenant, Generation: 2, ID: "kid-2", Algorithm: "RS256", Sealed: []byte("sealed"), CreateTime: base.Add(time.Second)}
	create := func(k store.SigningKey) error {
		return s.InTx(ctx, func(tx store.Tx) error { return tx.CreateSigningKey(ctx, k) })
	}
	for _, k := range []store.SigningKey{k2, k1} {
		if err := create(k); err != nil {
			t.Fatalf("create %s: %v", k.ID, err)
		}
	}
	dupGen := k1
	dupGen.ID = "kid-other"
	if err := create(dupGen); !errors.Is(err, credential.ErrConflict) {
		t.Errorf("second key of generation 1: %v, want ErrConflict", err)
	}
	dupKID := k1
	dupKID.Generation = 3
	if err := create(dupKID); !errors.Is(err, credential.ErrConflict) {
		t.Errorf("second key with kid-1: %v, want ErrConflict", err)
	}
	other := k1
	other.Tenant = tenantB
	if err := create(other); err != nil {
		t.Errorf("same generation and kid in another tenant: %v", err)
	}
	retire := base.Add(time.Hour)
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.RetireSigningKey(ctx, credential.DefaultTenant, 1, retire) }); err != nil {
		t.Fatalf("retire: %v", err)
	}
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.RetireSigningKey(ctx, credential.DefaultTenant, 9, retire) }); !errors.Is(err, credential.ErrNotFound) {
		t.Errorf("retire a missing generation: %v, want ErrNotFound", err)
	}
	got, err := s.ListSigningKeys(ctx, credential.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	k1.NotAfter = retire
	if diff := cmp.Diff([]store.SigningKey{k1, k2}, got); diff != "" {
		t.Errorf("ListSigningKeys (-want +got):\n%s", diff)
	}
	if got, _ := s.ListSigningKeys(ctx, "no-such-tenant"); len(got) != 0 {
		t.Errorf("another tenant sees %d keys", len(got))
	}
}
