package keys_test

import (
	"sync/atomic"
	"testing"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

// TestService_Verify_MissComparesDummy is finding 8e of issue 11: a v2
// credential whose key ID is not stored gets the same secret comparison as
// one whose ID is stored (against a dummy hash), in Verify, BatchVerify and
// SelfRevoke. BenchmarkVerifyMissTiming measures the result.
func TestService_Verify_MissComparesDummy(t *testing.T) {
	ts := newTestService(t)
	var dummies atomic.Int64
	keys.SetDummyCompareHook(ts.svc, func() { dummies.Add(1) })
	_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	ts.mustImport(t, tenantA, "sk_live_51HxYzAbCdEfGhIjKlMnOpQr", issueInput("alice"))
	unknown, err := apikey.NewV2(testPrefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := sameIDOtherSecret(t, cred)
	tests := []struct {
		name   string
		cred   string
		tenant credential.Tenant
		want   error
		dummy  int64
	}{
		{"unknown key ID", unknown.Token, tenantA, credential.ErrNotFound, 1},
		{"known key ID, other tenant", cred, tenantB, credential.ErrNotFound, 1},
		{"known key ID, wrong secret", wrongSecret, tenantA, credential.ErrNotFound, 0},
		{"valid", cred, tenantA, nil, 0},
		{"unknown imported key", "sk_live_neverImported_Xq7vR2mK", tenantA, credential.ErrNotFound, 0},
		{"bad checksum (no lookup)", flipLast(cred), tenantA, credential.ErrNotFound, 0},
	}
	for _, tt := range tests {
		before := dummies.Load()
		_, err := ts.verify(t, tt.tenant, tt.cred)
		checkErr(t, tt.name, err, tt.want)
		if got := dummies.Load() - before; got != tt.dummy {
			t.Errorf("%s: %d dummy comparisons, want %d", tt.name, got, tt.dummy)
		}
	}

	before := dummies.Load()
	vs, err := ts.svc.BatchVerify(t.Context(), []credential.Presented{
		{Tenant: tenantA, Credential: unknown.Token},
		{Tenant: tenantA, Credential: wrongSecret},
		{Tenant: tenantA, Credential: cred},
		{Tenant: tenantA, Credential: unknown.Token},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{credential.ErrNotFound, credential.ErrNotFound, nil, credential.ErrNotFound} {
		checkErr(t, "batch item", vs[i].Err, want)
	}
	if got := dummies.Load() - before; got != 2 {
		t.Errorf("BatchVerify: %d dummy comparisons, want 2 (one per unknown v2 key ID)", got)
	}

	before = dummies.Load()
	err = ts.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tenantA, Credential: unknown.Token}, credential.ReasonKeyCompromise)
	checkErr(t, "SelfRevoke(unknown)", err, credential.ErrNotFound)
	if got := dummies.Load() - before; got != 1 {
		t.Errorf("SelfRevoke: %d dummy comparisons, want 1", got)
	}
}

// flipLast changes the last character of s, whatever it is.
func flipLast(s string) string {
	last := byte('x')
	if s[len(s)-1] == 'x' {
		last = 'y'
	}
	return s[:len(s)-1] + string(last)
}
