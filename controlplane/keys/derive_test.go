package keys_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

func derive(ts *testService, t *testing.T, cred string, alg keys.Algorithm, mod func(*keys.DeriveInput)) (keys.Derived, error) {
	t.Helper()
	in := keys.DeriveInput{Presented: credential.Presented{Tenant: tenantA, Credential: cred}, Algorithm: alg}
	if mod != nil {
		mod(&in)
	}
	return ts.svc.Derive(t.Context(), in)
}

func TestService_Derive_Rules(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	in := issueInput("alice")
	in.TTL = 2 * time.Hour
	k, cred := ts.mustIssue(t, tenantA, in)

	for _, alg := range []keys.Algorithm{keys.AlgorithmJWT, keys.AlgorithmMacaroon} {
		d, err := derive(ts, t, cred, alg, func(in *keys.DeriveInput) {
			in.Scopes = []string{"keys:read"}
			in.CustomClaims = map[string]any{"run": "42", "scp": "widen-me", "sub": "x", "Scp": "widen-me", "EXP": 1e12, "ſcp": "widen-me"}
		})
		if err != nil {
			t.Fatalf("Derive(%v): %v", alg, err)
		}
		for _, name := range []string{"scp", "sub", "Scp", "EXP", "ſcp"} {
			if _, ok := d.Claims[name]; ok {
				t.Errorf("Derive(%v): reserved claim %q (in some letter case) kept in the claims", alg, name)
			}
		}
		if d.Claims["run"] != "42" {
			t.Errorf("Derive(%v): custom claim run dropped: %v", alg, d.Claims)
		}
		if d.ExpireTime != epoch.Add(time.Hour) {
			t.Errorf("default TTL: expires %v, want %v", d.ExpireTime, epoch.Add(time.Hour))
		}
		res, err := ts.verify(t, tenantA, d.Token)
		if err != nil {
			t.Fatalf("Verify(derived %v): %v", alg, err)
		}
		if res.KeyID != k.ID || len(res.Scopes) != 1 || res.Scopes[0] != "keys:read" || res.ActorID != "alice" {
			t.Errorf("Verify(derived %v) = %+v", alg, res)
		}
		if _, err := ts.verify(t, tenantB, d.Token); err == nil {
			t.Errorf("a %v derived in tenant A verified in tenant B", alg)
		}
		ts.clock.Advance(61 * time.Minute)
		_, err = ts.verify(t, tenantA, d.Token)
		checkErr(t, "Verify(expired derived)", err, credential.ErrExpired)
		ts.clock.Advance(-61 * time.Minute)
	}

	cases := []struct {
		name string
		mod  func(*keys.DeriveInput)
		want error
	}{
		{"scope not granted", func(in *keys.DeriveInput) { in.Scopes = []string{"admin"} }, credential.ErrPermissionDenied},
		{"ttl beyond the parent", func(in *keys.DeriveInput) { in.TTL = 3 * time.Hour }, credential.ErrInvalidArgument},
		{"custom claims over 4 KiB", func(in *keys.DeriveInput) { in.CustomClaims = map[string]any{"x": strings.Repeat("y", 5000)} }, credential.ErrInvalidArgument},
		{"wrong credential", func(in *keys.DeriveInput) { in.Presented.Credential = "sk_unknown_0123456789" }, credential.ErrUnauthenticated},
	}
	for _, tc := range cases {
		_, err := derive(ts, t, cred, keys.AlgorithmJWT, tc.mod)
		checkErr(t, tc.name, err, tc.want)
	}

	d, err := derive(ts, t, cred, keys.AlgorithmJWT, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = derive(ts, t, d.Token, keys.AlgorithmJWT, nil)
	checkErr(t, "derive from a derived token", err, credential.ErrInvalidArgument)
	ts.mustRevoke(t, tenantA, credential.KindIssued, k.ID)
	_, err = derive(ts, t, cred, keys.AlgorithmJWT, nil)
	checkErr(t, "derive from a revoked key", err, credential.ErrPermissionDenied)
	ts.clock.Advance(3 * time.Hour)
	_, cred2 := ts.mustIssue(t, tenantA, in)
	ts.clock.Advance(3 * time.Hour)
	_, err = derive(ts, t, cred2, keys.AlgorithmJWT, nil)
	checkErr(t, "derive from an expired key", err, credential.ErrFailedPrecondition)
}

// TestService_RotateSigningKey: tokens signed before a rotation keep
// verifying, the old key stays published, new tokens use the new key.
func TestService_RotateSigningKey(t *testing.T) {
	t.Parallel()
	ts := newTestService(t)
	_, cred := ts.mustIssue(t, tenantA, issueInput("alice"))
	before, err := derive(ts, t, cred, keys.AlgorithmJWT, nil)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := ts.svc.RotateSigningKey(t.Context(), "ES256")
	if err != nil {
		t.Fatalf("RotateSigningKey: %v", err)
	}
	set, err := ts.svc.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(set["keys"].([]any)); n != 2 {
		t.Errorf("JWKS after rotation has %d keys, want 2", n)
	}
	after, err := derive(ts, t, cred, keys.AlgorithmJWT, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"before": before.Token, "after": after.Token} {
		if _, err := ts.verify(t, tenantA, tok); err != nil {
			t.Errorf("token signed %s rotation: %v", name, err)
		}
	}
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(after.Token, ".")[0])
	if err != nil || !strings.Contains(string(header), `"kid":"`+kid+`"`) {
		t.Errorf("a token derived after rotation has header %s, want kid %s", header, kid)
	}
	// A second service over the same store (another replica) verifies both.
	replica := newTestService(t, withStore(ts.store), withSecrets(ts.secrets))
	for _, tok := range []string{before.Token, after.Token} {
		if _, err := replica.verify(t, tenantA, tok); err != nil {
			t.Errorf("replica: %v", err)
		}
	}
}

// TestService_Macaroon_RetiredSecret: a macaroon minted under a secret that
// has since been retired verifies until the retired secret expires.
func TestService_Macaroon_RetiredSecret(t *testing.T) {
	t.Parallel()
	old := newTestService(t)
	_, cred := old.mustIssue(t, tenantA, issueInput("alice"))
	d, err := derive(old, t, cred, keys.AlgorithmMacaroon, nil)
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustSecretSet(t, 'n', apikey.Secret{Value: []byte(strings.Repeat("s", 32)), ExpiresAt: epoch.Add(30 * time.Minute)})
	now := newTestService(t, withStore(old.store), withSecrets(rotated))
	if _, err := now.verify(t, tenantA, d.Token); err != nil {
		t.Fatalf("macaroon under a retired secret: %v", err)
	}
	now.clock.Advance(31 * time.Minute)
	if _, err := now.verify(t, tenantA, d.Token); err == nil {
		t.Error("macaroon verified after its secret expired")
	}
}

// TestService_RetiredIssuerExpiresWhileRunning: tokens of a retired issuer
// are accepted until its expires_at and rejected from then on by the same
// running Service (issue 11, finding 3: the expiry was evaluated once, when
// the process started, so such tokens kept verifying forever).
func TestService_RetiredIssuerExpiresWhileRunning(t *testing.T) {
	t.Parallel()
	const oldIssuer = "https://old.talos.example"
	old := newTestService(t, withOptions(func(o *keys.Options) { o.Issuer = oldIssuer }))
	_, cred := old.mustIssue(t, tenantA, issueInput("alice"))
	var toks []string
	for _, alg := range []keys.Algorithm{keys.AlgorithmJWT, keys.AlgorithmMacaroon} {
		d, err := derive(old, t, cred, alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, d.Token)
	}
	retires := epoch.Add(30 * time.Minute)
	ts := newTestService(t, withStore(old.store), withSecrets(old.secrets), withOptions(func(o *keys.Options) {
		o.Derived.RetiredIssuers = []token.RetiredIssuer{{Issuer: oldIssuer, ExpiresAt: retires}}
	}))
	for _, tok := range toks {
		if _, err := ts.verify(t, tenantA, tok); err != nil {
			t.Fatalf("a token of the retired issuer before its expiry: %v", err)
		}
	}
	ts.clock.Advance(retires.Sub(epoch) - time.Second)
	for _, tok := range toks {
		if _, err := ts.verify(t, tenantA, tok); err != nil {
			t.Fatalf("a token of the retired issuer a second before its expiry: %v", err)
		}
	}
	ts.clock.Advance(time.Second)
	for _, tok := range toks {
		_, err := ts.verify(t, tenantA, tok)
		checkErr(t, "a token of the retired issuer at its expiry", err, credential.ErrUnauthenticated)
	}
	// The policy the service hands to sidecars says the same.
	p := ts.svc.TokenPolicy()
	if p.Issuer() != testIssuer || p.Accepts(oldIssuer, ts.clock.Now()) || !p.Accepts(oldIssuer, epoch) {
		t.Errorf("TokenPolicy = %q, retired %v", p.Issuer(), p.Retired())
	}
}

// TestService_ForeignIssuerRejected: a JWT signed with this deployment's own
// key but naming another issuer is not accepted.
func TestService_ForeignIssuerRejected(t *testing.T) {
	t.Parallel()
	foreign := newTestService(t, withOptions(func(o *keys.Options) { o.Issuer = "https://evil.example" }))
	_, cred := foreign.mustIssue(t, tenantA, issueInput("alice"))
	d, err := derive(foreign, t, cred, keys.AlgorithmJWT, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestService(t, withStore(foreign.store), withSecrets(foreign.secrets))
	_, err = ts.verify(t, tenantA, d.Token)
	checkErr(t, "a foreign issuer signed with the published key", err, credential.ErrUnauthenticated)
}
