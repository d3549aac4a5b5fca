package keys_test

import (
	"errors"
	"testing"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// TestService_ReadReplica: verify traffic reads the replica, which the test
// keeps in sync by hand; writes, admin reads and self-revoke use the primary.
func TestService_ReadReplica(t *testing.T) {
	t.Parallel()
	replica := newTestStore(t)
	ts := newTestService(t, func(c *testConfig) { c.deps.Replica = replica })
	ctx := t.Context()
	k, cred := ts.mustIssue(t, tenantA, issueInput("alice"))

	// Not replicated yet: verify cannot see it, the admin API can.
	_, err := ts.verify(t, tenantA, cred)
	checkErr(t, "Verify before replication", err, credential.ErrNotFound)
	if _, err := ts.svc.Get(ctx, tenantA, credential.KindIssued, k.ID); err != nil {
		t.Fatalf("Get reads the primary: %v", err)
	}
	vs, err := ts.svc.BatchVerify(ctx, []credential.Presented{{Tenant: tenantA, Credential: cred}})
	if err != nil || !errors.Is(vs[0].Err, credential.ErrNotFound) {
		t.Fatalf("BatchVerify before replication = %+v, %v", vs, err)
	}

	sync := func() {
		t.Helper()
		stored, err := ts.store.GetKey(ctx, tenantA, credential.KindIssued, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		err = replica.InTx(ctx, func(tx store.Tx) error {
			if _, err := tx.GetKey(ctx, tenantA, credential.KindIssued, k.ID); err == nil {
				return tx.UpdateKey(ctx, stored)
			}
			return tx.CreateKey(ctx, stored)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sync()
	if got := ts.mustVerify(t, tenantA, cred); got != k.ID {
		t.Fatalf("Verify after replication = %s", got)
	}

	// Self-revoke authenticates against the primary and revokes there; the
	// replica shows it once it catches up.
	if err := ts.svc.SelfRevoke(ctx, credential.Presented{Tenant: tenantA, Credential: cred}, credential.ReasonKeyCompromise); err != nil {
		t.Fatalf("SelfRevoke: %v", err)
	}
	ts.mustVerify(t, tenantA, cred) // the lagging replica still says valid
	sync()
	_, err = ts.verify(t, tenantA, cred)
	checkErr(t, "Verify after the revocation replicated", err, credential.ErrRevoked)
}
