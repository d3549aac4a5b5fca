package keys_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

func TestService_Revoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		reason      credential.RevocationReason
		description string
		wantErr     error
	}{
		{"key compromise", credential.ReasonKeyCompromise, "", nil},
		{"affiliation changed", credential.ReasonAffiliationChanged, "", nil},
		{"superseded", credential.ReasonSuperseded, "", nil},
		{"privilege withdrawn", credential.ReasonPrivilegeWithdrawn, "", nil},
		{"privilege withdrawn with description", credential.ReasonPrivilegeWithdrawn, "left the company", nil},
		{"no reason", credential.ReasonUnspecified, "", credential.ErrInvalidArgument},
		{"unknown reason", credential.RevocationReason(99), "", credential.ErrInvalidArgument},
		{"description with key compromise", credential.ReasonKeyCompromise, "leaked in CI logs", credential.ErrInvalidArgument},
		{"description with superseded", credential.ReasonSuperseded, "new key", credential.ErrInvalidArgument},
		{"description too long", credential.ReasonPrivilegeWithdrawn, strings.Repeat("d", 1025), credential.ErrInvalidArgument},
		{"description not utf-8", credential.ReasonPrivilegeWithdrawn, "bad\xff", credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t)
			k, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
			ts.clock.Advance(time.Minute)
			seq := ts.lastSeq(t)

			err := ts.svc.Revoke(t.Context(), tenantA, credential.KindIssued, k.ID, tt.reason, tt.description)
			if !checkErr(t, "Revoke", err, tt.wantErr) {
				return
			}
			if tt.wantErr != nil {
				ts.mustVerify(t, tenantA, cred)
				if evs := ts.eventsSince(t, seq); len(evs) != 0 {
					t.Errorf("a refused Revoke wrote events %+v", evs)
				}
				return
			}

			res, err := ts.verify(t, tenantA, cred)
			checkErr(t, "Verify after Revoke", err, credential.ErrRevoked)
			if res.KeyID != k.ID || res.Status != credential.StateRevoked {
				t.Errorf("revoked Result = {KeyID %s, Status %v}, want {%s, revoked}", res.KeyID, res.Status, k.ID)
			}
			got, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := k
			want.Status, want.RevocationReason, want.RevocationDescription = credential.StateRevoked, tt.reason, tt.description
			want.UpdateTime = epoch.Add(time.Minute)
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("revoked key (-want +got):\n%s", diff)
			}

			err = ts.svc.Revoke(t.Context(), tenantA, credential.KindIssued, k.ID, credential.ReasonKeyCompromise, "")
			checkErr(t, "second Revoke", err, credential.ErrConflict)
			wantEvents := []credential.Event{{Tenant: tenantA, Kind: credential.KindIssued, KeyID: k.ID, Type: credential.EventRevoked, Time: epoch.Add(time.Minute)}}
			if diff := cmp.Diff(wantEvents, ts.eventsSince(t, seq), ignoreSeq); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestService_Revoke_NotFound(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	k, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	tests := []struct {
		name    string
		tenant  credential.Tenant
		kind    credential.Kind
		id      credential.KeyID
		wantErr error
	}{
		{"unknown id", tenantA, credential.KindIssued, "0b9f8f4e-2f39-4d5c-9d0e-5b8f3b1f2a11", credential.ErrNotFound},
		{"another tenant", tenantB, credential.KindIssued, k.ID, credential.ErrNotFound},
		{"wrong kind", tenantA, credential.KindImported, k.ID, credential.ErrNotFound},
		{"empty id", tenantA, credential.KindIssued, "", credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ts.svc.Revoke(t.Context(), tt.tenant, tt.kind, tt.id, credential.ReasonKeyCompromise, "")
			checkErr(t, "Revoke", err, tt.wantErr)
		})
	}
	ts.mustVerify(t, tenantA, cred)
}

func TestService_Revoke_WinsOverExpiry(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.TTL = time.Hour
	k, cred := ts.mustIssue(t, tenantA, in)
	ts.mustRevoke(t, tenantA, credential.KindIssued, k.ID)
	ts.clock.Advance(2 * time.Hour)
	_, err := ts.verify(t, tenantA, cred)
	checkErr(t, "Verify of a revoked, expired key", err, credential.ErrRevoked)
}

// rotateFixture is a key with every attribute set, issued at epoch with a
// 30-day TTL; the clock then moves on an hour.
func rotateFixture(t *testing.T, ts *testService) (credential.Key, string) {
	t.Helper()
	in := keys.IssueInput{
		Attributes: keys.Attributes{
			Name:         "billing",
			Scopes:       []string{"invoices:read"},
			Metadata:     json.RawMessage(`{"cost_center":"42"}`),
			RatePolicy:   &credential.RatePolicy{Quota: 10, Window: time.Minute, Unit: "requests"},
			AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		},
		ActorID:   "svc-billing",
		TTL:       30 * 24 * time.Hour,
		RequestID: "rotate-fixture",
	}
	k, cred := ts.mustIssue(t, tenantA, in)
	ts.clock.Advance(time.Hour)
	return k, cred
}

var inNet = netip.MustParseAddr("10.1.1.1")

func verifyFrom(t *testing.T, ts *testService, cred string) (credential.Result, error) {
	t.Helper()
	return ts.svc.Verify(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred, ClientIP: inNet})
}

func TestService_Rotate(t *testing.T) {
	t.Parallel()
	now := epoch.Add(time.Hour)
	tests := []struct {
		name   string
		in     keys.RotateInput
		modify func(want *credential.Key) // the new key's attributes, from the old key's
	}{
		{"inherits everything", keys.RotateInput{}, func(*credential.Key) {}},
		{
			"overrides apply",
			keys.RotateInput{
				Patch: keys.Patch{
					Attributes: keys.Attributes{Name: "billing v2", Scopes: []string{"invoices:write"}, Metadata: json.RawMessage(`{"x":1}`)},
					Set:        keys.FieldName | keys.FieldScopes,
				},
				Visibility: credential.VisibilityPublic,
			},
			func(k *credential.Key) {
				k.Name, k.Scopes, k.Visibility, k.Prefix = "billing v2", []string{"invoices:write"}, credential.VisibilityPublic, testPublicPrefix
			},
		},
		{
			"overrides clear",
			keys.RotateInput{Patch: keys.Patch{Set: keys.FieldMetadata | keys.FieldRatePolicy | keys.FieldAllowedCIDRs}},
			func(k *credential.Key) { k.Metadata, k.RatePolicy, k.AllowedCIDRs = nil, nil, nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t)
			old, oldCred := rotateFixture(t, ts)
			seq := ts.lastSeq(t)

			nk, newCred, gotOld, err := ts.svc.Rotate(t.Context(), tenantA, old.ID, tt.in)
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if newCred == "" || nk.ID == old.ID {
				t.Fatalf("Rotate returned key %s with secret %t; want a new key and its secret", nk.ID, newCred != "")
			}

			want := old
			tt.modify(&want)
			want.ID, want.SecretHash = nk.ID, nk.SecretHash
			want.CreateTime, want.UpdateTime, want.RequestID = now, now, ""
			// The absolute expiry is inherited, not the TTL.
			want.ExpireTime = epoch.Add(30 * 24 * time.Hour)
			if diff := cmp.Diff(want, nk, cmpOpts); diff != "" {
				t.Errorf("new key (-want +got):\n%s", diff)
			}
			stored, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, nk.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(nk, stored, cmpOpts); diff != "" {
				t.Errorf("stored new key differs from the returned one (-returned +stored):\n%s", diff)
			}
			res, err := verifyFrom(t, ts, newCred)
			if err != nil || res.KeyID != nk.ID {
				t.Errorf("Verify(new) = %s, %v; want %s valid", res.KeyID, err, nk.ID)
			}

			wantOld := old
			wantOld.Status, wantOld.RevocationReason, wantOld.UpdateTime = credential.StateRevoked, credential.ReasonSuperseded, now
			if diff := cmp.Diff(wantOld, gotOld, cmpOpts); diff != "" {
				t.Errorf("returned old key (-want +got):\n%s", diff)
			}
			storedOld, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, old.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantOld, storedOld, cmpOpts); diff != "" {
				t.Errorf("stored old key (-want +got):\n%s", diff)
			}
			_, err = verifyFrom(t, ts, oldCred)
			checkErr(t, "Verify(old)", err, credential.ErrRevoked)

			wantEvents := []credential.Event{
				{Tenant: tenantA, Kind: credential.KindIssued, KeyID: old.ID, Type: credential.EventRotated, Time: now},
				{Tenant: tenantA, Kind: credential.KindIssued, KeyID: nk.ID, Type: credential.EventCreated, Time: now},
			}
			if diff := cmp.Diff(wantEvents, ts.eventsSince(t, seq), ignoreSeq); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestService_Rotate_Grace(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	old, oldCred := rotateFixture(t, ts)
	now := ts.clock.Now()

	nk, newCred, gotOld, err := ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{Grace: time.Hour})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if gotOld.Status != credential.StateActive || gotOld.SupersededBy != nk.ID || !gotOld.ExpireTime.Equal(now.Add(time.Hour)) {
		t.Errorf("old key = {Status %v, SupersededBy %q, ExpireTime %v}, want {active, %s, %v}",
			gotOld.Status, gotOld.SupersededBy, gotOld.ExpireTime, nk.ID, now.Add(time.Hour))
	}
	if !nk.ExpireTime.Equal(old.ExpireTime) {
		t.Errorf("new key ExpireTime = %v, want the old key's %v", nk.ExpireTime, old.ExpireTime)
	}

	res, err := verifyFrom(t, ts, oldCred)
	if err != nil || res.KeyID != old.ID {
		t.Errorf("Verify(old) in the grace period = %s, %v; want valid", res.KeyID, err)
	}
	if _, err := verifyFrom(t, ts, newCred); err != nil {
		t.Errorf("Verify(new): %v", err)
	}

	_, _, _, err = ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{})
	checkErr(t, "Rotate(old) again in the grace period", err, credential.ErrFailedPrecondition)
	_, _, _, err = ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{Grace: time.Minute})
	checkErr(t, "Rotate(old) again with grace", err, credential.ErrFailedPrecondition)

	ts.clock.Advance(time.Hour - time.Microsecond)
	if _, err := verifyFrom(t, ts, oldCred); err != nil {
		t.Errorf("Verify(old) at the end of the grace period: %v", err)
	}
	ts.clock.Advance(time.Microsecond)
	_, err = verifyFrom(t, ts, oldCred)
	checkErr(t, "Verify(old) after the grace period", err, credential.ErrExpired)
	if _, err := verifyFrom(t, ts, newCred); err != nil {
		t.Errorf("Verify(new) after the grace period: %v", err)
	}
}

// TestService_Rotate_GraceBeyondExpiry: a grace period never extends a key.
func TestService_Rotate_GraceBeyondExpiry(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.TTL = 2 * time.Hour
	old, _ := ts.mustIssue(t, tenantA, in)
	_, _, gotOld, err := ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{Grace: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !gotOld.ExpireTime.Equal(old.ExpireTime) {
		t.Errorf("old key ExpireTime = %v, want its original %v", gotOld.ExpireTime, old.ExpireTime)
	}
}

func TestService_Rotate_Refused(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	revoked, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
	ts.mustRevoke(t, tenantA, credential.KindIssued, revoked.ID)
	expiring := issueInput("alice")
	expiring.TTL = time.Minute
	expired, _ := ts.mustIssue(t, tenantA, expiring)
	active, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
	imported := ts.mustImport(t, tenantA, "sk_live_notRotatable", issueInput("alice"))
	ts.clock.Advance(time.Hour)

	tests := []struct {
		name    string
		tenant  credential.Tenant
		id      credential.KeyID
		in      keys.RotateInput
		wantErr error
	}{
		{"revoked", tenantA, revoked.ID, keys.RotateInput{}, credential.ErrFailedPrecondition},
		{"expired", tenantA, expired.ID, keys.RotateInput{}, credential.ErrFailedPrecondition},
		{"unknown", tenantA, "0b9f8f4e-2f39-4d5c-9d0e-5b8f3b1f2a11", keys.RotateInput{}, credential.ErrNotFound},
		{"imported keys cannot be rotated", tenantA, imported.ID, keys.RotateInput{}, credential.ErrNotFound},
		{"another tenant", tenantB, active.ID, keys.RotateInput{}, credential.ErrNotFound},
		{"empty id", tenantA, "", keys.RotateInput{}, credential.ErrInvalidArgument},
		{"negative grace", tenantA, active.ID, keys.RotateInput{Grace: -time.Second}, credential.ErrInvalidArgument},
		{"invalid override", tenantA, active.ID, keys.RotateInput{Patch: keys.Patch{Set: keys.FieldName}}, credential.ErrInvalidArgument},
		{"metadata not an object", tenantA, active.ID, keys.RotateInput{Patch: keys.Patch{
			Attributes: keys.Attributes{Metadata: json.RawMessage(`[]`)}, Set: keys.FieldMetadata,
		}}, credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, secret, _, err := ts.svc.Rotate(t.Context(), tt.tenant, tt.id, tt.in)
			checkErr(t, "Rotate", err, tt.wantErr)
			if secret != "" {
				t.Error("a refused Rotate returned a secret")
			}
		})
	}
	got, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, active.ID)
	if err != nil || got.Status != credential.StateActive || got.SupersededBy != "" {
		t.Errorf("the active key after refused rotations: %+v, %v", got, err)
	}
}

func TestService_Rotate_PublicNeedsPublicPrefix(t *testing.T) {
	t.Parallel()
	ts := newTestService(t, withOptions(func(o *keys.Options) { o.PublicPrefix = "" }))
	k, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	_, _, _, err := ts.svc.Rotate(t.Context(), tenantA, k.ID, keys.RotateInput{Visibility: credential.VisibilityPublic})
	checkErr(t, "Rotate to public", err, credential.ErrInvalidArgument)
	ts.mustVerify(t, tenantA, cred) // the failed rotation rolled back
}

// TestService_Rotate_Concurrent: of many rotations of one key, exactly one
// wins; the rest see a non-active key, and no second new key is made.
func TestService_Rotate_Concurrent(t *testing.T) {
	t.Parallel()
	for _, grace := range []time.Duration{0, time.Hour} {
		t.Run("grace "+grace.String(), func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t)
			old, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
			seq := ts.lastSeq(t)

			const n = 8
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				ids   [n]credential.KeyID
				errs  [n]error
			)
			for i := range n {
				wg.Go(func() {
					<-start
					nk, _, _, err := ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{Grace: grace})
					ids[i], errs[i] = nk.ID, err
				})
			}
			close(start)
			wg.Wait()

			var winner credential.KeyID
			wins := 0
			for i, err := range errs {
				switch {
				case err == nil:
					wins++
					winner = ids[i]
				case errors.Is(err, credential.ErrFailedPrecondition), errors.Is(err, credential.ErrConflict):
				default:
					t.Errorf("rotation %d: %v, want success, ErrFailedPrecondition or ErrConflict", i, err)
				}
			}
			if wins != 1 {
				t.Fatalf("%d rotations succeeded, want exactly 1", wins)
			}
			list, _, err := ts.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]credential.KeyID, len(list))
			for i, k := range list {
				got[i] = k.ID
			}
			want := []credential.KeyID{old.ID, winner}
			if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b credential.KeyID) bool { return a < b })); diff != "" {
				t.Errorf("keys after concurrent rotations (-want +got):\n%s", diff)
			}
			if evs := ts.eventsSince(t, seq); len(evs) != 2 {
				t.Errorf("got %d events, want 2 (one rotation): %+v", len(evs), evs)
			}
		})
	}
}

func TestService_Update(t *testing.T) {
	t.Parallel()
	// A fresh input per subtest: Issue writes to its input's CIDRs and rate
	// policy (see TestService_Issue_DoesNotModifyInput).
	base := func() keys.IssueInput {
		return keys.IssueInput{
			Attributes: keys.Attributes{
				Name:         "orig",
				Scopes:       []string{"a"},
				Metadata:     json.RawMessage(`{"v":1}`),
				RatePolicy:   &credential.RatePolicy{Quota: 1, Window: time.Second, Unit: "requests"},
				AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			},
			ActorID: "alice",
		}
	}
	tests := []struct {
		name   string
		patch  keys.Patch
		modify func(*credential.Key)
	}{
		{"set name", keys.Patch{Attributes: keys.Attributes{Name: "renamed"}, Set: keys.FieldName},
			func(k *credential.Key) { k.Name = "renamed" }},
		{"set scopes", keys.Patch{Attributes: keys.Attributes{Scopes: []string{"b", "c"}}, Set: keys.FieldScopes},
			func(k *credential.Key) { k.Scopes = []string{"b", "c"} }},
		{"clear scopes", keys.Patch{Set: keys.FieldScopes},
			func(k *credential.Key) { k.Scopes = nil }},
		{"set metadata", keys.Patch{Attributes: keys.Attributes{Metadata: json.RawMessage(`{ "v": 2 }`)}, Set: keys.FieldMetadata},
			func(k *credential.Key) { k.Metadata = json.RawMessage(`{"v":2}`) }},
		{"clear metadata", keys.Patch{Set: keys.FieldMetadata},
			func(k *credential.Key) { k.Metadata = nil }},
		{"clear metadata with {}", keys.Patch{Attributes: keys.Attributes{Metadata: json.RawMessage(`{}`)}, Set: keys.FieldMetadata},
			func(k *credential.Key) { k.Metadata = nil }},
		{"set rate policy", keys.Patch{Attributes: keys.Attributes{RatePolicy: &credential.RatePolicy{Quota: 9, Window: time.Hour, Unit: "bytes"}}, Set: keys.FieldRatePolicy},
			func(k *credential.Key) {
				k.RatePolicy = &credential.RatePolicy{Quota: 9, Window: time.Hour, Unit: "bytes"}
			}},
		{"clear rate policy", keys.Patch{Set: keys.FieldRatePolicy},
			func(k *credential.Key) { k.RatePolicy = nil }},
		{"set cidrs", keys.Patch{Attributes: keys.Attributes{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/24")}}, Set: keys.FieldAllowedCIDRs},
			func(k *credential.Key) { k.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} }},
		{"clear cidrs", keys.Patch{Set: keys.FieldAllowedCIDRs},
			func(k *credential.Key) { k.AllowedCIDRs = nil }},
		{"fields outside the set are ignored", keys.Patch{Attributes: keys.Attributes{Name: "ignored", Scopes: []string{"x"}}, Set: keys.FieldScopes},
			func(k *credential.Key) { k.Scopes = []string{"x"} }},
		{"several fields", keys.Patch{Attributes: keys.Attributes{Name: "n", Scopes: []string{"s"}}, Set: keys.FieldName | keys.FieldScopes | keys.FieldMetadata},
			func(k *credential.Key) { k.Name, k.Scopes, k.Metadata = "n", []string{"s"}, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t)
			k, cred := ts.mustIssue(t, tenantA, base())
			ts.clock.Advance(time.Minute)
			seq := ts.lastSeq(t)

			got, err := ts.svc.Update(t.Context(), tenantA, credential.KindIssued, k.ID, tt.patch)
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			want := k
			tt.modify(&want)
			want.UpdateTime = epoch.Add(time.Minute)
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("Update result (-want +got):\n%s", diff)
			}
			stored, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, stored, cmpOpts); diff != "" {
				t.Errorf("stored key (-want +got):\n%s", diff)
			}
			// Verify sees the change at once.
			res, err := ts.svc.Verify(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred, ClientIP: netip.MustParseAddr("10.0.0.1")})
			if err != nil && !errors.Is(err, credential.ErrForbidden) {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(want.Scopes, res.Scopes, cmpOpts); diff != "" {
				t.Errorf("Verify scopes (-want +got):\n%s", diff)
			}
			wantEvents := []credential.Event{{Tenant: tenantA, Kind: credential.KindIssued, KeyID: k.ID, Type: credential.EventUpdated, Time: epoch.Add(time.Minute)}}
			if diff := cmp.Diff(wantEvents, ts.eventsSince(t, seq), ignoreSeq); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestService_Update_NoFields(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	k, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
	seq := ts.lastSeq(t)
	ts.clock.Advance(time.Minute)
	got, err := ts.svc.Update(t.Context(), tenantA, credential.KindIssued, k.ID, keys.Patch{Attributes: keys.Attributes{Name: "ignored"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got, cmpOpts); diff != "" {
		t.Errorf("Update with no fields changed the key (-before +after):\n%s", diff)
	}
	if evs := ts.eventsSince(t, seq); len(evs) != 0 {
		t.Errorf("Update with no fields wrote events %+v", evs)
	}
}

func TestService_Update_Errors(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	k, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
	imported := ts.mustImport(t, tenantA, "sk_live_update_me", issueInput("alice"))
	seq := ts.lastSeq(t)
	tests := []struct {
		name    string
		tenant  credential.Tenant
		kind    credential.Kind
		id      credential.KeyID
		patch   keys.Patch
		wantErr error
	}{
		{"unknown key", tenantA, credential.KindIssued, "0b9f8f4e-2f39-4d5c-9d0e-5b8f3b1f2a11",
			keys.Patch{Attributes: keys.Attributes{Name: "x"}, Set: keys.FieldName}, credential.ErrNotFound},
		{"another tenant", tenantB, credential.KindIssued, k.ID,
			keys.Patch{Attributes: keys.Attributes{Name: "x"}, Set: keys.FieldName}, credential.ErrNotFound},
		{"wrong kind", tenantA, credential.KindImported, k.ID,
			keys.Patch{Attributes: keys.Attributes{Name: "x"}, Set: keys.FieldName}, credential.ErrNotFound},
		{"empty id", tenantA, credential.KindIssued, "", keys.Patch{}, credential.ErrInvalidArgument},
		{"name cleared", tenantA, credential.KindIssued, k.ID, keys.Patch{Set: keys.FieldName}, credential.ErrInvalidArgument},
		{"metadata over 64 KiB", tenantA, credential.KindIssued, k.ID,
			keys.Patch{Attributes: keys.Attributes{Metadata: metadataOfSize(keys.MaxMetadataBytes + 1)}, Set: keys.FieldMetadata}, credential.ErrInvalidArgument},
		{"metadata an array", tenantA, credential.KindImported, imported.ID,
			keys.Patch{Attributes: keys.Attributes{Metadata: json.RawMessage(`[{"a":1}]`)}, Set: keys.FieldMetadata}, credential.ErrInvalidArgument},
		{"metadata a number", tenantA, credential.KindIssued, k.ID,
			keys.Patch{Attributes: keys.Attributes{Metadata: json.RawMessage(`42`)}, Set: keys.FieldMetadata}, credential.ErrInvalidArgument},
		{"empty scope", tenantA, credential.KindIssued, k.ID,
			keys.Patch{Attributes: keys.Attributes{Scopes: []string{""}}, Set: keys.FieldScopes}, credential.ErrInvalidArgument},
		{"invalid cidr", tenantA, credential.KindIssued, k.ID,
			keys.Patch{Attributes: keys.Attributes{AllowedCIDRs: []netip.Prefix{{}}}, Set: keys.FieldAllowedCIDRs}, credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ts.svc.Update(t.Context(), tt.tenant, tt.kind, tt.id, tt.patch)
			checkErr(t, "Update", err, tt.wantErr)
		})
	}
	if evs := ts.eventsSince(t, seq); len(evs) != 0 {
		t.Errorf("refused updates wrote events %+v", evs)
	}
}

func TestService_Delete(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	const raw = "sk_live_deleteMe"
	imp := ts.mustImport(t, tenantA, raw, issueInput("alice"))
	issued, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	ts.clock.Advance(time.Minute)
	seq := ts.lastSeq(t)

	if err := ts.svc.Delete(t.Context(), tenantA, imp.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := ts.verify(t, tenantA, raw)
	checkErr(t, "Verify after Delete", err, credential.ErrNotFound)
	_, err = ts.svc.Get(t.Context(), tenantA, credential.KindImported, imp.ID)
	checkErr(t, "Get after Delete", err, credential.ErrNotFound)
	checkErr(t, "second Delete", ts.svc.Delete(t.Context(), tenantA, imp.ID), credential.ErrNotFound)
	checkErr(t, "Delete of an issued key", ts.svc.Delete(t.Context(), tenantA, issued.ID), credential.ErrNotFound)
	checkErr(t, "Delete with no id", ts.svc.Delete(t.Context(), tenantA, ""), credential.ErrInvalidArgument)
	ts.mustVerify(t, tenantA, cred)

	want := []credential.Event{{Tenant: tenantA, Kind: credential.KindImported, KeyID: imp.ID, Type: credential.EventDeleted, Time: epoch.Add(time.Minute)}}
	if diff := cmp.Diff(want, ts.eventsSince(t, seq), ignoreSeq); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// The raw key can be imported again.
	ts.mustImport(t, tenantA, raw, issueInput("alice"))
}

// TestService_Outbox: every change appends its event, of the right type and
// key, in the transaction that makes it.
func TestService_Outbox(t *testing.T) {
	t.Parallel()
	type ev struct {
		typ  credential.EventType
		kind credential.Kind
		key  string // "old", "new" or "imported"
	}
	tests := []struct {
		name string
		run  func(t *testing.T, ts *testService, old credential.Key, imported credential.Key) (newID credential.KeyID)
		want []ev
	}{
		{"issue", func(t *testing.T, ts *testService, _, _ credential.Key) credential.KeyID {
			k, _ := ts.mustIssue(t, tenantA, issueInput("bob"))
			return k.ID
		}, []ev{{credential.EventCreated, credential.KindIssued, "new"}}},
		{"import", func(t *testing.T, ts *testService, _, _ credential.Key) credential.KeyID {
			return ts.mustImport(t, tenantA, "sk_live_outbox_new", issueInput("bob")).ID
		}, []ev{{credential.EventCreated, credential.KindImported, "new"}}},
		{"revoke", func(t *testing.T, ts *testService, old, _ credential.Key) credential.KeyID {
			ts.mustRevoke(t, tenantA, credential.KindIssued, old.ID)
			return ""
		}, []ev{{credential.EventRevoked, credential.KindIssued, "old"}}},
		{"revoke imported", func(t *testing.T, ts *testService, _, imp credential.Key) credential.KeyID {
			ts.mustRevoke(t, tenantA, credential.KindImported, imp.ID)
			return ""
		}, []ev{{credential.EventRevoked, credential.KindImported, "imported"}}},
		{"rotate", func(t *testing.T, ts *testService, old, _ credential.Key) credential.KeyID {
			nk, _, _, err := ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{})
			if err != nil {
				t.Fatal(err)
			}
			return nk.ID
		}, []ev{{credential.EventRotated, credential.KindIssued, "old"}, {credential.EventCreated, credential.KindIssued, "new"}}},
		{"rotate with grace", func(t *testing.T, ts *testService, old, _ credential.Key) credential.KeyID {
			nk, _, _, err := ts.svc.Rotate(t.Context(), tenantA, old.ID, keys.RotateInput{Grace: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return nk.ID
		}, []ev{{credential.EventRotated, credential.KindIssued, "old"}, {credential.EventCreated, credential.KindIssued, "new"}}},
		{"update", func(t *testing.T, ts *testService, old, _ credential.Key) credential.KeyID {
			if _, err := ts.svc.Update(t.Context(), tenantA, credential.KindIssued, old.ID, keys.Patch{Set: keys.FieldScopes}); err != nil {
				t.Fatal(err)
			}
			return ""
		}, []ev{{credential.EventUpdated, credential.KindIssued, "old"}}},
		{"update imported", func(t *testing.T, ts *testService, _, imp credential.Key) credential.KeyID {
			if _, err := ts.svc.Update(t.Context(), tenantA, credential.KindImported, imp.ID, keys.Patch{Set: keys.FieldScopes}); err != nil {
				t.Fatal(err)
			}
			return ""
		}, []ev{{credential.EventUpdated, credential.KindImported, "imported"}}},
		{"delete", func(t *testing.T, ts *testService, _, imp credential.Key) credential.KeyID {
			if err := ts.svc.Delete(t.Context(), tenantA, imp.ID); err != nil {
				t.Fatal(err)
			}
			return ""
		}, []ev{{credential.EventDeleted, credential.KindImported, "imported"}}},
		{"self-revoke", func(t *testing.T, ts *testService, _, _ credential.Key) credential.KeyID {
			err := ts.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tenantA, Credential: "sk_live_outbox_Xq7vR2mK"}, credential.ReasonKeyCompromise)
			if err != nil {
				t.Fatal(err)
			}
			return ""
		}, []ev{{credential.EventRevoked, credential.KindImported, "imported"}}},
		{"refused revoke writes nothing", func(t *testing.T, ts *testService, old, _ credential.Key) credential.KeyID {
			if err := ts.svc.Revoke(t.Context(), tenantA, credential.KindIssued, old.ID, 0, ""); err == nil {
				t.Fatal("Revoke without a reason succeeded")
			}
			return ""
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t)
			old, _ := ts.mustIssue(t, tenantA, issueInput("alice"))
			imp := ts.mustImport(t, tenantA, "sk_live_outbox_Xq7vR2mK", issueInput("alice"))
			ts.clock.Advance(time.Minute)
			seq := ts.lastSeq(t)

			newID := tt.run(t, ts, old, imp)
			ids := map[string]credential.KeyID{"old": old.ID, "new": newID, "imported": imp.ID}
			var want []credential.Event
			for _, e := range tt.want {
				want = append(want, credential.Event{Tenant: tenantA, Kind: e.kind, KeyID: ids[e.key], Type: e.typ, Time: epoch.Add(time.Minute)})
			}
			got := ts.eventsSince(t, seq)
			if diff := cmp.Diff(want, got, ignoreSeq, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq <= got[i-1].Seq {
					t.Errorf("event seqs not increasing: %d then %d", got[i-1].Seq, got[i].Seq)
				}
			}
		})
	}
}
