package keys_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func TestService_Import(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	const raw = "sk_live_51HxYzAbCdEfGhIjKlMnOpQr"
	in := issueInput("alice")
	in.Metadata = json.RawMessage(`{"source":"stripe"}`)
	in.TTL = time.Hour
	k := ts.mustImport(t, tenantA, raw, in)

	if want := apikey.ImportedID(tenantA, raw); k.ID != want {
		t.Errorf("imported key ID = %s, want %s", k.ID, want)
	}
	if k.Kind != credential.KindImported || k.Status != credential.StateActive || k.SecretHash != nil || k.Prefix != "" {
		t.Errorf("imported key = %+v, want an active imported key with no secret hash or prefix", k)
	}
	res, err := ts.verify(t, tenantA, raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := credential.Result{
		Type:       credential.TypeImported,
		Tenant:     tenantA,
		KeyID:      k.ID,
		ActorID:    "alice",
		Scopes:     []string{"keys:read", "keys:write"},
		Metadata:   json.RawMessage(`{"source":"stripe"}`),
		Status:     credential.StateActive,
		Visibility: credential.VisibilitySecret,
		ExpireTime: epoch.Add(time.Hour),
		Issuer:     testIssuer,
	}
	if diff := cmp.Diff(want, res, cmpOpts); diff != "" {
		t.Errorf("Verify result (-want +got):\n%s", diff)
	}
	got, err := ts.svc.Get(t.Context(), tenantA, credential.KindImported, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got, cmpOpts); diff != "" {
		t.Errorf("Get differs from the imported key (-imported +got):\n%s", diff)
	}

	ts.clock.Advance(time.Hour)
	_, err = ts.verify(t, tenantA, raw)
	checkErr(t, "Verify after the TTL", err, credential.ErrExpired)
}

func TestService_Import_Refused(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	const existing = "sk_live_alreadyThere"
	ts.mustImport(t, tenantA, existing, issueInput("alice"))
	_, issuedCred := ts.mustIssue(t, tenantA, issueInput("alice"))
	fresh, err := apikey.NewV2("whatever", nil) // issued shape, never stored anywhere
	if err != nil {
		t.Fatal(err)
	}
	v1 := newTestService(t, withOptions(func(o *keys.Options) { o.Format = keys.FormatV1 }))
	_, v1Cred := v1.mustIssue(t, tenantA, issueInput("alice"))

	tests := []struct {
		name    string
		raw     string
		edit    func(*keys.IssueInput)
		wantErr error
	}{
		{"duplicate", existing, nil, credential.ErrConflict},
		{"an issued v2 key", issuedCred, nil, credential.ErrConflict},
		{"any v2-shaped string", fresh.Token, nil, credential.ErrConflict},
		{"an issued v1 key", v1Cred, nil, credential.ErrConflict},
		{"jwt shape", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", nil, credential.ErrFailedPrecondition},
		{"macaroon shape", "mc_v1_AgETbWFjYXJvb24", nil, credential.ErrFailedPrecondition},
		{"empty", "", nil, credential.ErrInvalidArgument},
		{"too long", strings.Repeat("k", keys.MaxCredentialBytes+1), nil, credential.ErrInvalidArgument},
		{"not utf-8", "sk_\xff\xfe", nil, credential.ErrInvalidArgument},
		{"leading space", " sk_live_x", nil, credential.ErrInvalidArgument},
		{"trailing newline", "sk_live_x\n", nil, credential.ErrInvalidArgument},
		{"no actor", "sk_live_noActor_Xq7vR2mK", func(in *keys.IssueInput) { in.ActorID = "" }, credential.ErrInvalidArgument},
		{"metadata not an object", "sk_live_badMetadata", func(in *keys.IssueInput) { in.Metadata = json.RawMessage(`true`) }, credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := issueInput("alice")
			if tt.edit != nil {
				tt.edit(&in)
			}
			_, err := ts.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: in, RawKey: tt.raw})
			checkErr(t, "Import", err, tt.wantErr)
		})
	}
	// The issued key is untouched by the refused import of its string.
	ts.mustVerify(t, tenantA, issuedCred)
}

func TestService_Import_MaxLength(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	raw := strings.Repeat("k7Qz", keys.MaxCredentialBytes/4)
	k := ts.mustImport(t, tenantA, raw, issueInput("alice"))
	if got := ts.mustVerify(t, tenantA, raw); got != k.ID {
		t.Errorf("Verify = %s, want %s", got, k.ID)
	}
}

func TestService_Import_Idempotent(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.RequestID = "import-once"
	first := ts.mustImport(t, tenantA, "sk_live_idem_Xq7vR2mK", in)
	again, err := ts.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: in, RawKey: "sk_live_idem_Xq7vR2mK"})
	if err != nil {
		t.Fatalf("repeated Import: %v", err)
	}
	if again.ID != first.ID {
		t.Errorf("repeated Import = %s, want %s", again.ID, first.ID)
	}
}

func TestService_Import_TenantIsolation(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	const raw = "ghp_sharedBetweenTenants0123456789"
	a := ts.mustImport(t, tenantA, raw, issueInput("alice"))
	b := ts.mustImport(t, tenantB, raw, issueInput("bob"))
	if a.ID == b.ID {
		t.Fatalf("the same raw key has the same ID %s in two tenants", a.ID)
	}
	issuedA, credA := ts.mustIssue(t, tenantA, issueInput("alice"))

	tests := []struct {
		name   string
		tenant credential.Tenant
		cred   string
		wantID credential.KeyID
		want   error
	}{
		{"imported in A", tenantA, raw, a.ID, nil},
		{"imported in B", tenantB, raw, b.ID, nil},
		{"imported in neither", "9a3e1f4c-0000-4000-8000-000000000001", raw, "", credential.ErrNotFound},
		{"issued in A, presented to B", tenantB, credA, "", credential.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := ts.verify(t, tt.tenant, tt.cred)
			checkErr(t, "Verify", err, tt.want)
			if res.KeyID != tt.wantID {
				t.Errorf("KeyID = %q, want %q", res.KeyID, tt.wantID)
			}
		})
	}

	t.Run("get across tenants", func(t *testing.T) {
		t.Parallel()
		_, err := ts.svc.Get(t.Context(), tenantB, credential.KindImported, a.ID)
		checkErr(t, "Get(B, A's imported key)", err, credential.ErrNotFound)
		_, err = ts.svc.Get(t.Context(), tenantB, credential.KindIssued, issuedA.ID)
		checkErr(t, "Get(B, A's issued key)", err, credential.ErrNotFound)
	})
	t.Run("list across tenants", func(t *testing.T) {
		t.Parallel()
		ks, _, err := ts.svc.List(t.Context(), tenantB, credential.KindIssued, keys.ListInput{})
		if err != nil || len(ks) != 0 {
			t.Errorf("List(B, issued) = %d keys, %v; want none", len(ks), err)
		}
	})
	t.Run("mutations across tenants", func(t *testing.T) {
		t.Parallel()
		err := ts.svc.Revoke(t.Context(), tenantB, credential.KindIssued, issuedA.ID, credential.ReasonKeyCompromise, "")
		checkErr(t, "Revoke(B, A's key)", err, credential.ErrNotFound)
		_, err = ts.svc.Update(t.Context(), tenantB, credential.KindImported, a.ID, keys.Patch{Set: keys.FieldScopes})
		checkErr(t, "Update(B, A's key)", err, credential.ErrNotFound)
		_, _, _, err = ts.svc.Rotate(t.Context(), tenantB, issuedA.ID, keys.RotateInput{})
		checkErr(t, "Rotate(B, A's key)", err, credential.ErrNotFound)
		checkErr(t, "Delete(B, A's key)", ts.svc.Delete(t.Context(), tenantB, a.ID), credential.ErrNotFound)
		err = ts.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tenantB, Credential: credA}, credential.ReasonKeyCompromise)
		checkErr(t, "SelfRevoke(B, A's credential)", err, credential.ErrNotFound)
	})
	t.Run("revoke and delete stay in their tenant", func(t *testing.T) {
		t.Parallel()
		ts := newTestService(t)
		a := ts.mustImport(t, tenantA, raw, issueInput("alice"))
		b := ts.mustImport(t, tenantB, raw, issueInput("bob"))
		ts.mustRevoke(t, tenantA, credential.KindImported, a.ID)
		if got := ts.mustVerify(t, tenantB, raw); got != b.ID {
			t.Errorf("Verify in B after revoking in A = %s, want %s", got, b.ID)
		}
		if err := ts.svc.Delete(t.Context(), tenantA, a.ID); err != nil {
			t.Fatal(err)
		}
		ts.mustVerify(t, tenantB, raw)
	})
}

func TestService_Import_KeyedHash(t *testing.T) {
	t.Parallel()
	ts := newTestService(t, withOptions(func(o *keys.Options) { o.KeyedImportHash = true }))
	const raw = "sk_live_keyedHashImport"
	k := ts.mustImport(t, tenantA, raw, issueInput("alice"))
	if k.ID == apikey.ImportedID(tenantA, raw) {
		t.Error("keyed import hash gave the unkeyed ID")
	}
	if got := ts.mustVerify(t, tenantA, raw); got != k.ID {
		t.Errorf("Verify = %s, want %s", got, k.ID)
	}
	_, err := ts.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: issueInput("alice"), RawKey: raw})
	checkErr(t, "duplicate Import", err, credential.ErrConflict)
}

// TestService_Import_KeyedHashDuplicateAfterSecretRotation: with keyed
// import hashes, a key imported under a secret that has since been retired
// is still that key: importing the same raw key again must conflict, not add
// a second row that shadows the first on verify.
func TestService_Import_KeyedHashDuplicateAfterSecretRotation(t *testing.T) {
	t.Parallel()
	keyed := withOptions(func(o *keys.Options) { o.KeyedImportHash = true })
	old := newTestService(t, keyed)
	const raw = "sk_live_importedBeforeRotation"
	first := old.mustImport(t, tenantA, raw, issueInput("alice"))
	old.mustRevoke(t, tenantA, credential.KindImported, first.ID)

	retired := apikey.Secret{Value: []byte(strings.Repeat("s", 32)), ExpiresAt: epoch.Add(24 * time.Hour)}
	rotated := newTestService(t, keyed, withStore(old.store), withClock(old.clock), withSecrets(mustSecretSet(t, 'n', retired)))
	_, err := rotated.verify(t, tenantA, raw)
	checkErr(t, "Verify under the retired secret", err, credential.ErrRevoked)

	second, err := rotated.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: issueInput("mallory"), RawKey: raw})
	checkErr(t, "Import of an already imported raw key after a secret rotation", err, credential.ErrConflict)
	if err == nil {
		res, verr := rotated.verify(t, tenantA, raw)
		t.Errorf("the second import made key %s; Verify now answers key %s (%v) instead of the revoked %s",
			second.ID, res.KeyID, verr, first.ID)
	}
}

func TestService_BatchImport_Limits(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	batch := func(n int) []keys.ImportInput {
		ins := make([]keys.ImportInput, n)
		for i := range ins {
			ins[i] = keys.ImportInput{IssueInput: issueInput("alice"), RawKey: fmt.Sprintf("sk_live_batch_%04d", i)}
		}
		return ins
	}
	tests := []struct {
		name    string
		ins     []keys.ImportInput
		wantErr error
	}{
		{"empty", nil, credential.ErrInvalidArgument},
		{"1001", batch(keys.MaxBatchImport + 1), credential.ErrInvalidArgument},
		{"1000", batch(keys.MaxBatchImport), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := ts.svc.BatchImport(t.Context(), tenantA, tt.ins)
			if !checkErr(t, "BatchImport", err, tt.wantErr) || err != nil {
				if len(out) != 0 {
					t.Errorf("a refused batch returned %d outcomes", len(out))
				}
				return
			}
			if len(out) != len(tt.ins) {
				t.Fatalf("got %d outcomes, want %d", len(out), len(tt.ins))
			}
			for i, o := range out {
				if o.Err != nil || o.Key.ID != apikey.ImportedID(tenantA, tt.ins[i].RawKey) {
					t.Fatalf("outcome %d = {%s, %v}, want the key of item %d", i, o.Key.ID, o.Err, i)
				}
			}
			ts.mustVerify(t, tenantA, tt.ins[len(tt.ins)-1].RawKey)
		})
	}
}

func TestService_BatchImport_Mixed(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	ts.mustImport(t, tenantA, "sk_live_existing", issueInput("alice"))
	seq := ts.lastSeq(t)

	item := func(raw, requestID string) keys.ImportInput {
		in := issueInput("alice")
		in.RequestID = requestID
		return keys.ImportInput{IssueInput: in, RawKey: raw}
	}
	noActor := item("sk_live_noActor_Xq7vR2mK", "")
	noActor.ActorID = ""

	tests := []struct {
		in      keys.ImportInput
		wantErr error
	}{
		{item("sk_live_first_Xq7vR2mK", "req-1"), nil},
		{noActor, credential.ErrInvalidArgument},
		{item("sk_live_first_Xq7vR2mK", ""), credential.ErrConflict}, // duplicate of item 0
		{item("sk_live_existing", ""), credential.ErrConflict},
		{item("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", ""), credential.ErrFailedPrecondition},
		{item("", ""), credential.ErrInvalidArgument},
		{item("sk_live_second_Xq7vR2mK", "req-2"), nil},
		{item("sk_live_third_Xq7vR2mK", "req-1"), credential.ErrConflict}, // request ID of item 0
		{item("sk_live_fourth_Xq7vR2mK", ""), nil},
	}
	ins := make([]keys.ImportInput, len(tests))
	for i, tt := range tests {
		ins[i] = tt.in
	}
	out, err := ts.svc.BatchImport(t.Context(), tenantA, ins)
	if err != nil {
		t.Fatalf("BatchImport: %v", err)
	}
	if len(out) != len(ins) {
		t.Fatalf("got %d outcomes, want %d", len(out), len(ins))
	}
	var created []credential.KeyID
	for i, tt := range tests {
		if !checkErr(t, fmt.Sprintf("item %d", i), out[i].Err, tt.wantErr) {
			continue
		}
		if tt.wantErr != nil {
			if out[i].Key.ID != "" {
				t.Errorf("item %d failed but returned key %s", i, out[i].Key.ID)
			}
			continue
		}
		if want := apikey.ImportedID(tenantA, tt.in.RawKey); out[i].Key.ID != want {
			t.Errorf("item %d: key %s, want %s", i, out[i].Key.ID, want)
		}
		if got := ts.mustVerify(t, tenantA, tt.in.RawKey); got != out[i].Key.ID {
			t.Errorf("item %d verifies as %s, want %s", i, got, out[i].Key.ID)
		}
		created = append(created, out[i].Key.ID)
	}
	for _, raw := range []string{"sk_live_third_Xq7vR2mK", "sk_live_noActor_Xq7vR2mK"} {
		_, err := ts.verify(t, tenantA, raw)
		checkErr(t, "Verify of a refused item "+raw, err, credential.ErrNotFound)
	}
	var want []credential.Event
	for _, id := range created {
		want = append(want, credential.Event{Tenant: tenantA, Kind: credential.KindImported, KeyID: id, Type: credential.EventCreated, Time: epoch})
	}
	if diff := cmp.Diff(want, ts.eventsSince(t, seq), ignoreSeq); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestService_BatchImport_RequestIDInUse: an item whose request ID already
// belongs to a stored key fails alone; the rest of the batch is imported.
func TestService_BatchImport_RequestIDInUse(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.RequestID = "taken"
	ts.mustImport(t, tenantA, "sk_live_owner_Xq7vR2mK", in)

	ins := []keys.ImportInput{
		{IssueInput: issueInput("alice"), RawKey: "sk_live_ok_1_Xq7vR2mK"},
		{IssueInput: in, RawKey: "sk_live_other_Xq7vR2mK"},
		{IssueInput: issueInput("alice"), RawKey: "sk_live_ok_2_Xq7vR2mK"},
	}
	out, err := ts.svc.BatchImport(t.Context(), tenantA, ins)
	if err != nil {
		t.Fatalf("BatchImport: %v", err)
	}
	checkErr(t, "item 0", out[0].Err, nil)
	checkErr(t, "item 1", out[1].Err, credential.ErrConflict)
	checkErr(t, "item 2", out[2].Err, nil)
	ts.mustVerify(t, tenantA, "sk_live_ok_1_Xq7vR2mK")
	ts.mustVerify(t, tenantA, "sk_live_ok_2_Xq7vR2mK")
}

// TestService_BatchImport_DerivedOrIssuedShape: in a batch, an item shaped
// like an issued key fails like one shaped like a derived token, with
// FAILED_PRECONDITION, as in Talos (reference §2.2); a single import of an
// issued-key shape is a conflict.
func TestService_BatchImport_DerivedOrIssuedShape(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	_, issuedCred := ts.mustIssue(t, tenantA, issueInput("alice"))
	ins := []keys.ImportInput{
		{IssueInput: issueInput("alice"), RawKey: issuedCred},
		{IssueInput: issueInput("alice"), RawKey: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"},
		{IssueInput: issueInput("alice"), RawKey: "mc_v1_AgETbWFjYXJvb24"},
		{IssueInput: issueInput("alice"), RawKey: "sk_live_fine_Xq7vR2mK"},
	}
	out, err := ts.svc.BatchImport(t.Context(), tenantA, ins)
	if err != nil {
		t.Fatalf("BatchImport: %v", err)
	}
	checkErr(t, "issued-key shape", out[0].Err, credential.ErrFailedPrecondition)
	checkErr(t, "jwt shape", out[1].Err, credential.ErrFailedPrecondition)
	checkErr(t, "macaroon shape", out[2].Err, credential.ErrFailedPrecondition)
	checkErr(t, "plain key", out[3].Err, nil)
}
