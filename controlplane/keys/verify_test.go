package keys_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mr-tron/base58"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func TestService_Verify_Issued(t *testing.T) {
	t.Parallel()
	v1 := withOptions(func(o *keys.Options) { o.Format = keys.FormatV1 })
	tests := []struct {
		name       string
		opts       []testOption
		visibility credential.Visibility
		ttl        time.Duration
		wantPrefix string
		wantVis    credential.Visibility
	}{
		{"v2 secret", nil, 0, time.Hour, testPrefix + "_v2_", credential.VisibilitySecret},
		{"v2 public", nil, credential.VisibilityPublic, time.Hour, testPublicPrefix + "_v2_", credential.VisibilityPublic},
		{"v2 never expires", nil, credential.VisibilitySecret, 0, testPrefix + "_v2_", credential.VisibilitySecret},
		{"v1 secret", []testOption{v1}, 0, time.Hour, testPrefix + "_v1_", credential.VisibilitySecret},
		{"v1 public", []testOption{v1}, credential.VisibilityPublic, 0, testPublicPrefix + "_v1_", credential.VisibilityPublic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t, tt.opts...)
			in := keys.IssueInput{
				Attributes: keys.Attributes{
					Name:       "ci",
					Scopes:     []string{"repo:read", "repo:write"},
					Metadata:   json.RawMessage(`{"team": "infra"}`),
					RatePolicy: &credential.RatePolicy{Quota: 5, Window: time.Minute, Unit: "calls"},
				},
				ActorID:    "user-42",
				TTL:        tt.ttl,
				Visibility: tt.visibility,
			}
			k, secret := ts.mustIssue(t, tenantA, in)
			if !strings.HasPrefix(secret, tt.wantPrefix) {
				t.Errorf("secret starts %.16q, want prefix %q", secret, tt.wantPrefix)
			}
			ts.clock.Advance(time.Minute)

			got, err := ts.verify(t, tenantA, secret)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			var wantExpiry time.Time
			if tt.ttl > 0 {
				wantExpiry = epoch.Add(tt.ttl)
			}
			want := credential.Result{
				Type:       credential.TypeIssued,
				Tenant:     tenantA,
				KeyID:      k.ID,
				ActorID:    "user-42",
				Scopes:     []string{"repo:read", "repo:write"},
				Metadata:   json.RawMessage(`{"team":"infra"}`),
				Status:     credential.StateActive,
				Visibility: tt.wantVis,
				ExpireTime: wantExpiry,
				RatePolicy: &credential.RatePolicy{Quota: 5, Window: time.Minute, Unit: "calls"},
				Issuer:     testIssuer,
			}
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("Verify result mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestService_Verify_Rejects(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	other, err := apikey.NewV2("other", nil)
	if err != nil {
		t.Fatal(err)
	}
	v1Garbage := testPrefix + "_v1_" + base58.Encode([]byte("1772366400:0b9f8f4e-2f39-4d5c-9d0e-5b8f3b1f2a11")) +
		"_" + base58.Encode([]byte(strings.Repeat("h", 32)))
	if !apikey.LooksIssued(v1Garbage) {
		t.Fatal("v1 garbage does not look issued; fix the fixture")
	}

	tests := []struct {
		name    string
		tenant  credential.Tenant
		cred    string
		wantErr error
	}{
		{"empty", tenantA, "", credential.ErrInvalidArgument},
		{"8193 bytes", tenantA, strings.Repeat("k", keys.MaxCredentialBytes+1), credential.ErrInvalidArgument},
		{"8192 bytes is looked up", tenantA, strings.Repeat("k", keys.MaxCredentialBytes), credential.ErrNotFound},
		{"unknown prefix", tenantA, other.Token, credential.ErrNotFound},
		{"right key ID, wrong secret", tenantA, sameIDOtherSecret(t, cred), credential.ErrNotFound},
		{"v2-shaped garbage", tenantA, testPrefix + "_v2_" + strings.Repeat("2", 72), credential.ErrNotFound},
		{"v2-shaped chunk overflow", tenantA, testPrefix + "_v2_" + strings.Repeat("z", 72), credential.ErrNotFound},
		{"v1-shaped garbage", tenantA, v1Garbage, credential.ErrNotFound},
		{"opaque garbage", tenantA, "definitely-not-a-key", credential.ErrNotFound},
		{"truncated", tenantA, cred[:len(cred)-1], credential.ErrNotFound},
		{"with trailing space", tenantA, cred + " ", credential.ErrNotFound},
		{"another tenant", tenantB, cred, credential.ErrNotFound},
		{"forged jwt", tenantA, "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", credential.ErrUnauthenticated},
		{"garbage macaroon", tenantA, "mc_v1_AgEEdGVzdA", credential.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := ts.verify(t, tt.tenant, tt.cred)
			checkErr(t, "Verify", err, tt.wantErr)
			if res.KeyID != "" {
				t.Errorf("Result.KeyID = %s on a failed authentication, want none", res.KeyID)
			}
		})
	}
}

// TestService_Verify_OneCharacterChanged changes every character of a valid
// credential in turn; each variant must read as not found.
func TestService_Verify_OneCharacterChanged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []testOption
	}{
		{"v2", nil},
		{"v1", []testOption{withOptions(func(o *keys.Options) { o.Format = keys.FormatV1 })}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t, tt.opts...)
			_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
			for i := range len(cred) {
				b := []byte(cred)
				b[i] = substitute(b[i])
				_, err := ts.verify(t, tenantA, string(b))
				checkErr(t, fmt.Sprintf("Verify with byte %d changed", i), err, credential.ErrNotFound)
			}
			ts.mustVerify(t, tenantA, cred)
		})
	}
}

// substitute returns another character of the same class (base58 and
// prefix characters stay valid, so only the checksum can catch the change).
func substitute(c byte) byte {
	switch c {
	case 'x':
		return 'y'
	case '_':
		return 'x'
	}
	return 'x'
}

func TestService_Verify_Expiry(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.TTL = time.Hour
	k, cred := ts.mustIssue(t, tenantA, in)

	ts.clock.Advance(time.Hour - time.Microsecond)
	ts.mustVerify(t, tenantA, cred)

	ts.clock.Advance(time.Microsecond) // exactly the expiry: already expired
	res, err := ts.verify(t, tenantA, cred)
	checkErr(t, "Verify at expiry", err, credential.ErrExpired)
	if res.KeyID != k.ID || res.Status != credential.StateExpired {
		t.Errorf("expired Result = {KeyID %s, Status %v}, want {%s, expired}", res.KeyID, res.Status, k.ID)
	}
}

// TestService_Verify_V1MaxAge: a v1 key embeds its creation time, and is not
// found once that is older than max_ttl (plus the clock skew), even when its
// row never expires, as in Talos.
func TestService_Verify_V1MaxAge(t *testing.T) {
	t.Parallel()
	ts := newTestService(t, withOptions(func(o *keys.Options) {
		o.Format, o.MaxTTL, o.ClockSkew = keys.FormatV1, 48*time.Hour, time.Minute
	}))
	_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))

	ts.clock.Advance(48*time.Hour + time.Minute)
	ts.mustVerify(t, tenantA, cred)
	ts.clock.Advance(time.Second)
	_, err := ts.verify(t, tenantA, cred)
	checkErr(t, "Verify past max_ttl", err, credential.ErrNotFound)
}

func TestService_Verify_AllowedCIDRs(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	restricted, restrictedCred := ts.mustIssue(t, tenantA, in)
	_, openCred := ts.mustIssue(t, tenantA, issueInput("bob"))

	tests := []struct {
		name    string
		cred    string
		ip      netip.Addr
		wantErr error
	}{
		{"allowed v4", restrictedCred, netip.MustParseAddr("10.20.30.40"), nil},
		{"allowed v6", restrictedCred, netip.MustParseAddr("2001:db8::1"), nil},
		{"denied v4", restrictedCred, netip.MustParseAddr("192.168.1.1"), credential.ErrForbidden},
		{"denied v6", restrictedCred, netip.MustParseAddr("2001:db9::1"), credential.ErrForbidden},
		{"v4-mapped v6 is its v4 address", restrictedCred, netip.MustParseAddr("::ffff:10.1.2.3"), nil},
		{"v4-mapped v6 outside the range", restrictedCred, netip.MustParseAddr("::ffff:192.168.1.1"), credential.ErrForbidden},
		{"unknown address fails closed", restrictedCred, netip.Addr{}, credential.ErrForbidden},
		{"unrestricted key, unknown address", openCred, netip.Addr{}, nil},
		{"unrestricted key, any address", openCred, netip.MustParseAddr("203.0.113.9"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := ts.svc.Verify(t.Context(), credential.Presented{Tenant: tenantA, Credential: tt.cred, ClientIP: tt.ip})
			checkErr(t, "Verify", err, tt.wantErr)
			if tt.cred == restrictedCred && res.KeyID != restricted.ID {
				t.Errorf("Result.KeyID = %q, want %s (possession was proven)", res.KeyID, restricted.ID)
			}
		})
	}
}

// TestService_Verify_SecretRotation: keys made under a secret that is now
// retired still verify until it expires.
func TestService_Verify_SecretRotation(t *testing.T) {
	t.Parallel()
	for _, format := range []keys.Format{keys.FormatV2, keys.FormatV1} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			old := newTestService(t, withOptions(func(o *keys.Options) { o.Format = format }))
			k, cred := old.mustIssue(t, tenantA, issueInput("alice"))
			old.mustIssue(t, tenantA, issueInput("alice"))
			_, page, err := old.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{PageSize: 1})
			if err != nil || page == "" {
				t.Fatalf("List: token %q, err %v", page, err)
			}

			retired := apikey.Secret{Value: []byte(strings.Repeat("s", 32)), ExpiresAt: epoch.Add(time.Hour)}
			rotated := newTestService(t, withStore(old.store), withClock(old.clock),
				withSecrets(mustSecretSet(t, 'n', retired)), withOptions(func(o *keys.Options) { o.Format = format }))
			if got := rotated.mustVerify(t, tenantA, cred); got != k.ID {
				t.Errorf("Verify under the retired secret = %s, want %s", got, k.ID)
			}
			if _, _, err := rotated.svc.List(t.Context(), tenantA, credential.KindIssued, keys.ListInput{PageSize: 1, PageToken: page}); err != nil {
				t.Errorf("List with a page token sealed under the retired secret: %v", err)
			}

			dropped := newTestService(t, withStore(old.store), withClock(old.clock), withSecrets(mustSecretSet(t, 'n')))
			_, err = dropped.verify(t, tenantA, cred)
			checkErr(t, "Verify after the secret was dropped", err, credential.ErrNotFound)

			old.clock.Advance(time.Hour)
			_, err = rotated.verify(t, tenantA, cred)
			checkErr(t, "Verify after the retired secret expired", err, credential.ErrNotFound)
		})
	}
}

// TestService_Verify_RetiredPrefix: keys keep verifying under a retired
// prefix, and not once it is dropped.
func TestService_Verify_RetiredPrefix(t *testing.T) {
	t.Parallel()
	old := newTestService(t)
	k, cred := old.mustIssue(t, tenantA, issueInput("alice"))

	renamed := newTestService(t, withStore(old.store), withSecrets(old.secrets), withOptions(func(o *keys.Options) {
		o.Prefix, o.RetiredPrefixes = "acme", []string{testPrefix}
	}))
	if got := renamed.mustVerify(t, tenantA, cred); got != k.ID {
		t.Errorf("Verify under a retired prefix = %s, want %s", got, k.ID)
	}
	_, fresh := renamed.mustIssue(t, tenantA, issueInput("alice"))
	if !strings.HasPrefix(fresh, "acme_v2_") {
		t.Errorf("new key %.12q does not use the current prefix", fresh)
	}

	dropped := newTestService(t, withStore(old.store), withSecrets(old.secrets), withOptions(func(o *keys.Options) { o.Prefix = "acme" }))
	_, err := dropped.verify(t, tenantA, cred)
	checkErr(t, "Verify under a dropped prefix", err, credential.ErrNotFound)
}

func TestService_BatchVerify_Limits(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	batch := func(n int) []credential.Presented {
		ps := make([]credential.Presented, n)
		for i := range ps {
			ps[i] = credential.Presented{Tenant: tenantA, Credential: cred}
		}
		return ps
	}
	mixed := batch(2)
	mixed[1].Tenant = tenantB

	tests := []struct {
		name    string
		ps      []credential.Presented
		wantErr error
	}{
		{"nil", nil, credential.ErrInvalidArgument},
		{"empty", []credential.Presented{}, credential.ErrInvalidArgument},
		{"101", batch(keys.MaxBatchVerify + 1), credential.ErrInvalidArgument},
		{"mixed tenants", mixed, credential.ErrInvalidArgument},
		{"1", batch(1), nil},
		{"100", batch(keys.MaxBatchVerify), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vs, err := ts.svc.BatchVerify(t.Context(), tt.ps)
			if !checkErr(t, "BatchVerify", err, tt.wantErr) || err != nil {
				return
			}
			if len(vs) != len(tt.ps) {
				t.Fatalf("got %d verdicts, want %d", len(vs), len(tt.ps))
			}
			for i, v := range vs {
				if v.Err != nil {
					t.Errorf("verdict %d: %v", i, v.Err)
				}
			}
		})
	}
}

func TestService_BatchVerify_Mixed(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	ctx := t.Context()

	valid, validCred := ts.mustIssue(t, tenantA, issueInput("alice"))
	const raw = "sk_live_51HxImportedKeyForBatch"
	imported := ts.mustImport(t, tenantA, raw, issueInput("bob"))
	revoked, revokedCred := ts.mustIssue(t, tenantA, issueInput("carol"))
	ts.mustRevoke(t, tenantA, credential.KindIssued, revoked.ID)
	expiring := issueInput("dave")
	expiring.TTL = time.Minute
	expired, expiredCred := ts.mustIssue(t, tenantA, expiring)
	restrictedIn := issueInput("erin")
	restrictedIn.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	restricted, restrictedCred := ts.mustIssue(t, tenantA, restrictedIn)
	revokedImported := ts.mustImport(t, tenantA, "ghp_revokedImportedKey", issueInput("frank"))
	ts.mustRevoke(t, tenantA, credential.KindImported, revokedImported.ID)
	ts.clock.Advance(time.Hour)

	tests := []struct {
		cred    string
		ip      netip.Addr
		wantID  credential.KeyID
		wantErr error
	}{
		{validCred, netip.Addr{}, valid.ID, nil},
		{raw, netip.Addr{}, imported.ID, nil},
		{"not-a-key-at-all", netip.Addr{}, "", credential.ErrNotFound},
		{testPrefix + "_v2_" + strings.Repeat("2", 72), netip.Addr{}, "", credential.ErrNotFound},
		{revokedCred, netip.Addr{}, revoked.ID, credential.ErrRevoked},
		{"", netip.Addr{}, "", credential.ErrInvalidArgument},
		{expiredCred, netip.Addr{}, expired.ID, credential.ErrExpired},
		{sameIDOtherSecret(t, validCred), netip.Addr{}, "", credential.ErrNotFound},
		{restrictedCred, netip.MustParseAddr("10.9.8.7"), restricted.ID, nil},
		{restrictedCred, netip.MustParseAddr("192.0.2.1"), restricted.ID, credential.ErrForbidden},
		{"ghp_revokedImportedKey", netip.Addr{}, revokedImported.ID, credential.ErrRevoked},
		{strings.Repeat("k", keys.MaxCredentialBytes+1), netip.Addr{}, "", credential.ErrInvalidArgument},
		{validCred, netip.Addr{}, valid.ID, nil}, // a repeat is answered again
	}
	ps := make([]credential.Presented, len(tests))
	for i, tt := range tests {
		ps[i] = credential.Presented{Tenant: tenantA, Credential: tt.cred, ClientIP: tt.ip}
	}
	vs, err := ts.svc.BatchVerify(ctx, ps)
	if err != nil {
		t.Fatalf("BatchVerify: %v", err)
	}
	if len(vs) != len(ps) {
		t.Fatalf("got %d verdicts, want %d", len(vs), len(ps))
	}
	for i, tt := range tests {
		checkErr(t, fmt.Sprintf("item %d", i), vs[i].Err, tt.wantErr)
		if vs[i].Result.KeyID != tt.wantID {
			t.Errorf("item %d: KeyID = %q, want %q", i, vs[i].Result.KeyID, tt.wantID)
		}
		// A batch answers each item exactly as Verify would.
		res, err := ts.svc.Verify(ctx, ps[i])
		if credential.KindOf(err) != credential.KindOf(vs[i].Err) {
			t.Errorf("item %d: Verify error %v, BatchVerify error %v", i, err, vs[i].Err)
		}
		if diff := cmp.Diff(res, vs[i].Result, cmpOpts); diff != "" {
			t.Errorf("item %d: BatchVerify result differs from Verify (-verify +batch):\n%s", i, diff)
		}
	}
}

func TestService_SelfRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		imported  bool
		reason    credential.RevocationReason
		wantErr   error
		wantAfter error // Verify afterwards
	}{
		{"issued", false, credential.ReasonKeyCompromise, nil, credential.ErrRevoked},
		{"issued without reason", false, credential.ReasonUnspecified, nil, credential.ErrRevoked},
		{"imported", true, credential.ReasonAffiliationChanged, nil, credential.ErrRevoked},
		{"privilege withdrawn is for admins", false, credential.ReasonPrivilegeWithdrawn, credential.ErrInvalidArgument, nil},
		{"unknown reason", false, credential.RevocationReason(42), credential.ErrInvalidArgument, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestService(t)
			var (
				id   credential.KeyID
				cred string
				kind = credential.KindIssued
			)
			if tt.imported {
				cred, kind = "sk_test_selfRevokeMe", credential.KindImported
				id = ts.mustImport(t, tenantA, cred, issueInput("alice")).ID
			} else {
				var k credential.Key
				k, cred = ts.mustIssue(t, tenantA, issueInput("alice"))
				id = k.ID
			}
			seq := ts.lastSeq(t)
			p := credential.Presented{Tenant: tenantA, Credential: cred}

			err := ts.svc.SelfRevoke(t.Context(), p, tt.reason)
			if !checkErr(t, "SelfRevoke", err, tt.wantErr) {
				return
			}
			_, err = ts.verify(t, tenantA, cred)
			checkErr(t, "Verify after SelfRevoke", err, tt.wantAfter)
			if tt.wantErr != nil {
				if evs := ts.eventsSince(t, seq); len(evs) != 0 {
					t.Errorf("a refused SelfRevoke wrote events %+v", evs)
				}
				return
			}
			k, err := ts.svc.Get(t.Context(), tenantA, kind, id)
			if err != nil {
				t.Fatal(err)
			}
			if k.Status != credential.StateRevoked || k.RevocationReason != tt.reason {
				t.Errorf("after SelfRevoke: status %v reason %v, want revoked %v", k.Status, k.RevocationReason, tt.reason)
			}
			// Idempotent, unlike the admin revoke.
			checkErr(t, "second SelfRevoke", ts.svc.SelfRevoke(t.Context(), p, credential.ReasonKeyCompromise), nil)
			want := []credential.Event{{Tenant: tenantA, Kind: kind, KeyID: id, Type: credential.EventRevoked, Time: epoch}}
			if diff := cmp.Diff(want, ts.eventsSince(t, seq), ignoreSeq); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestService_SelfRevoke_NotFound(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	k, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	tests := []struct {
		name    string
		tenant  credential.Tenant
		cred    string
		wantErr error
	}{
		{"tampered", tenantA, sameIDOtherSecret(t, cred), credential.ErrNotFound},
		{"bad checksum", tenantA, cred[:len(cred)-1] + string(substitute(cred[len(cred)-1])), credential.ErrNotFound},
		{"unknown imported", tenantA, "sk_live_never_imported", credential.ErrNotFound},
		{"another tenant", tenantB, cred, credential.ErrNotFound},
		{"empty", tenantA, "", credential.ErrInvalidArgument},
		{"too long", tenantA, strings.Repeat("k", keys.MaxCredentialBytes+1), credential.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ts.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tt.tenant, Credential: tt.cred}, credential.ReasonKeyCompromise)
			checkErr(t, "SelfRevoke", err, tt.wantErr)
		})
	}
	if got := ts.mustVerify(t, tenantA, cred); got != k.ID {
		t.Errorf("the real key verifies as %s, want %s", got, k.ID)
	}
}

// TestService_SelfRevoke_ExpiredOrRestricted: possession is the proof, so
// the holder may revoke a key that has expired or is presented from outside
// its allowed CIDRs.
func TestService_SelfRevoke_ExpiredOrRestricted(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.TTL = time.Minute
	in.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	k, cred := ts.mustIssue(t, tenantA, in)
	_, restrictedCred := ts.mustIssue(t, tenantA, keys.IssueInput{
		Attributes: keys.Attributes{Name: "r", AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		ActorID:    "bob",
	})

	checkErr(t, "SelfRevoke from a disallowed address", ts.svc.SelfRevoke(t.Context(),
		credential.Presented{Tenant: tenantA, Credential: restrictedCred, ClientIP: netip.MustParseAddr("192.0.2.1")},
		credential.ReasonKeyCompromise), nil)
	_, err := ts.svc.Verify(t.Context(), credential.Presented{Tenant: tenantA, Credential: restrictedCred, ClientIP: netip.MustParseAddr("10.0.0.1")})
	checkErr(t, "Verify after SelfRevoke", err, credential.ErrRevoked)

	ts.clock.Advance(time.Hour)
	checkErr(t, "SelfRevoke of an expired key", ts.svc.SelfRevoke(t.Context(),
		credential.Presented{Tenant: tenantA, Credential: cred}, credential.ReasonKeyCompromise), nil)
	got, err := ts.svc.Get(t.Context(), tenantA, credential.KindIssued, k.ID)
	if err != nil || got.Status != credential.StateRevoked {
		t.Errorf("Get after SelfRevoke = status %v, %v; want revoked", got.Status, err)
	}
}

// TestService_Verify_FailsClosed: when the store cannot answer, a valid
// credential is never accepted.
func TestService_Verify_FailsClosed(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	ts.mustImport(t, tenantA, "sk_live_failClosed", issueInput("alice"))
	ps := []credential.Presented{{Tenant: tenantA, Credential: cred}, {Tenant: tenantA, Credential: "sk_live_failClosed"}}

	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for _, p := range ps {
			if _, err := ts.svc.Verify(ctx, p); err == nil {
				t.Error("Verify with a cancelled context accepted the credential")
			}
		}
		if vs, err := ts.svc.BatchVerify(ctx, ps); err == nil {
			t.Errorf("BatchVerify with a cancelled context = %+v, want an error", vs)
		}
	})
	t.Run("closed store", func(t *testing.T) {
		t.Parallel()
		closed := newTestService(t)
		_, cred := closed.mustIssue(t, tenantA, issueInput("alice"))
		if err := closed.store.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := closed.verify(t, tenantA, cred)
		checkErr(t, "Verify", err, credential.ErrUnavailable)
		_, err = closed.svc.BatchVerify(t.Context(), []credential.Presented{{Tenant: tenantA, Credential: cred}})
		checkErr(t, "BatchVerify", err, credential.ErrUnavailable)
		err = closed.svc.SelfRevoke(t.Context(), credential.Presented{Tenant: tenantA, Credential: cred}, credential.ReasonKeyCompromise)
		checkErr(t, "SelfRevoke", err, credential.ErrUnavailable)
		_, _, err = closed.svc.Issue(t.Context(), tenantA, issueInput("alice"))
		checkErr(t, "Issue", err, credential.ErrUnavailable)
	})
}
