package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
	"github.com/talos-project/talos/sidecar/pipeline"
)

const (
	cpIssuer      = "https://cp.example"
	oldIssuer     = "https://old-cp.example"
	foreignIssuer = "https://evil.example"
)

func mustPolicy(t *testing.T, iss string, retired []token.RetiredIssuer, skew time.Duration) *token.Policy {
	t.Helper()
	p, err := token.NewPolicy(iss, retired, skew)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// jwtFixture is a control plane's signer with its JWKS and policy served by
// a fake upstream, and a pipeline over it on a test clock.
type jwtFixture struct {
	clk *clock
	sg  *token.Signer
	up  *fakeUpstream
	p   *pipeline.Pipeline
}

func newJWTFixture(t *testing.T, pol *token.Policy) *jwtFixture {
	t.Helper()
	f := &jwtFixture{clk: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, up: newUpstream()}
	key, err := token.GenerateKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.sg, err = token.NewSigner([]token.SigningKey{key}, ""); err != nil {
		t.Fatal(err)
	}
	f.up.jwks, _ = json.Marshal(f.sg.PublicJWKS(f.clk.Now()))
	if pol != nil {
		f.up.policy.Store(pol)
	}
	f.p = newPipeline(t, f.up, pipeline.Options{Now: f.clk.Now, TTL: time.Hour, NegativeTTL: time.Second})
	return f
}

// sign signs a token of iss valid from nbf to exp (around the clock's now).
func (f *jwtFixture) sign(t *testing.T, iss string, nbf, exp time.Duration) string {
	t.Helper()
	now := f.clk.Now()
	tok, err := f.sg.SignJWT(token.Claims{
		Subject: "k1", Issuer: iss, Tenant: credential.DefaultTenant, Scopes: []string{"read"},
		IssuedAt: now.Add(min(nbf, 0)), NotBefore: now.Add(nbf), Expiry: now.Add(exp),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJWT_ForeignIssuerDeniedLocally: a JWT signed with a key of the JWKS
// but naming an issuer the control plane does not accept is denied by the
// sidecar itself, without an upstream call (issue 11, finding 2: it was
// allowed, since the sidecar checked no issuer at all).
func TestJWT_ForeignIssuerDeniedLocally(t *testing.T) {
	f := newJWTFixture(t, mustPolicy(t, cpIssuer, nil, time.Minute))
	v := authorize(f.p, presented(f.sign(t, foreignIssuer, 0, time.Hour)))
	if !errors.Is(v.Err, credential.ErrUnauthenticated) {
		t.Fatalf("foreign issuer: %+v, want UNAUTHENTICATED", v)
	}
	if v := authorize(f.p, presented(f.sign(t, cpIssuer, 0, time.Hour))); v.Err != nil {
		t.Fatalf("own issuer: %+v", v)
	}
	if n := f.up.calls.Load(); n != 0 {
		t.Errorf("upstream verify calls = %d, want 0 (local verdicts)", n)
	}
	if n := f.p.Stats().JWTLocal; n != 2 {
		t.Errorf("local JWT verifications = %d, want 2", n)
	}
}

// TestJWT_ControlPlaneClockSkew: the sidecar applies the control plane's
// clock skew (90s here), not a default of its own (it was always 5m), to
// expiry and not-before, on a fresh verification and on a cached verdict.
func TestJWT_ControlPlaneClockSkew(t *testing.T) {
	const skew = 90 * time.Second
	f := newJWTFixture(t, mustPolicy(t, cpIssuer, nil, skew))
	for _, tc := range []struct {
		name     string
		nbf, exp time.Duration
		ok       bool
	}{
		{"expired within the skew", -time.Hour, -skew + time.Second, true},
		{"expired beyond the skew", -time.Hour, -skew - time.Second, false},
		{"not yet valid within the skew", skew - time.Second, time.Hour, true},
		{"not yet valid beyond the skew", skew + time.Second, time.Hour, false},
	} {
		v := authorize(f.p, presented(f.sign(t, cpIssuer, tc.nbf, tc.exp)))
		if tc.ok && v.Err != nil {
			t.Errorf("%s: %+v, want allowed", tc.name, v)
		}
		if !tc.ok && !errors.Is(v.Err, credential.ErrExpired) {
			t.Errorf("%s: %+v, want EXPIRED", tc.name, v)
		}
	}
	// A cached allow holds until expiry plus the skew, not one moment more.
	tok := f.sign(t, cpIssuer, 0, time.Minute)
	if v := authorize(f.p, presented(tok)); v.Err != nil {
		t.Fatal(v.Err)
	}
	f.clk.Add(time.Minute + skew - time.Second)
	if v := authorize(f.p, presented(tok)); v.Err != nil || v.Cache != extauthz.CacheHit {
		t.Fatalf("within the skew after expiry: %+v, want a cached allow", v)
	}
	f.clk.Add(time.Second)
	if v := authorize(f.p, presented(tok)); !errors.Is(v.Err, credential.ErrExpired) {
		t.Fatalf("at expiry plus the skew: %+v, want EXPIRED", v)
	}
	if n := f.up.calls.Load(); n != 0 {
		t.Errorf("upstream verify calls = %d, want 0", n)
	}
}

// TestJWT_RetiredIssuerExpiresPerRequest: a retired issuer is accepted until
// its expiry and denied from that instant on, also for a verdict cached
// before (a JWT verified here, a macaroon answered by the control plane).
func TestJWT_RetiredIssuerExpiresPerRequest(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	retires := start.Add(10 * time.Minute)
	f := newJWTFixture(t, mustPolicy(t, cpIssuer, []token.RetiredIssuer{{Issuer: oldIssuer, ExpiresAt: retires}}, time.Minute))
	jwt := f.sign(t, oldIssuer, 0, time.Hour)
	const mac = "mc_v1_retiredissuermacaroon"
	f.up.set(mac, credential.Result{
		Type: credential.TypeMacaroon, Tenant: credential.DefaultTenant, KeyID: "k2", Status: credential.StateActive,
		Issuer: oldIssuer, ExpireTime: start.Add(time.Hour),
	}, nil)
	for _, cred := range []string{jwt, mac} {
		if v := authorize(f.p, presented(cred)); v.Err != nil {
			t.Fatalf("retired issuer before its expiry: %+v", v)
		}
	}
	f.clk.Add(retires.Sub(start) - time.Second)
	for _, cred := range []string{jwt, mac} {
		if v := authorize(f.p, presented(cred)); v.Err != nil || v.Cache != extauthz.CacheHit {
			t.Fatalf("a second before the expiry: %+v, want a cached allow", v)
		}
	}
	f.clk.Add(time.Second)
	for _, cred := range []string{jwt, mac} {
		if v := authorize(f.p, presented(cred)); !errors.Is(v.Err, credential.ErrUnauthenticated) {
			t.Fatalf("at the retired issuer's expiry: %+v, want UNAUTHENTICATED", v)
		}
	}
	// A new token of that issuer is refused too.
	if v := authorize(f.p, presented(f.sign(t, oldIssuer, 0, time.Hour))); !errors.Is(v.Err, credential.ErrUnauthenticated) {
		t.Fatalf("a new token of the expired issuer: %+v", v)
	}
	if n := f.up.calls.Load(); n != 1 {
		t.Errorf("upstream verify calls = %d, want 1 (the macaroon, once)", n)
	}
}

// TestJWT_NoPolicyGoesUpstream: until the control plane has given a token
// policy (an older control plane, or one not reachable yet) the sidecar does
// not verify JWTs itself; the control plane decides. Once the policy
// arrives, JWTs are verified locally again.
func TestJWT_NoPolicyGoesUpstream(t *testing.T) {
	f := newJWTFixture(t, nil)
	tok := f.sign(t, foreignIssuer, 0, time.Hour)
	f.up.set(tok, credential.Result{Type: credential.TypeJWT}, &credential.Error{Kind: credential.ErrUnauthenticated, Reason: "SIGNATURE_INVALID"})
	v := authorize(f.p, presented(tok))
	if !errors.Is(v.Err, credential.ErrUnauthenticated) || f.up.calls.Load() != 1 || f.p.Stats().JWTLocal != 0 {
		t.Fatalf("no policy: %+v, upstream calls %d, local %d; want the upstream's denial", v, f.up.calls.Load(), f.p.Stats().JWTLocal)
	}
	f.up.policy.Store(mustPolicy(t, cpIssuer, nil, time.Minute))
	f.clk.Add(2 * time.Second) // past minRefetch: the next JWT asks again
	good := f.sign(t, cpIssuer, 0, time.Hour)
	if v := authorize(f.p, presented(good)); v.Err != nil || f.p.Stats().JWTLocal != 1 || f.up.calls.Load() != 1 {
		t.Fatalf("with a policy: %+v, local %d, upstream %d", v, f.p.Stats().JWTLocal, f.up.calls.Load())
	}
}

// TestJWT_CIDRStillCheckedPerRequest: options from the policy defer the IP
// check to the per-request check, as before.
func TestJWT_CIDRStillCheckedPerRequest(t *testing.T) {
	f := newJWTFixture(t, mustPolicy(t, cpIssuer, nil, time.Minute))
	now := f.clk.Now()
	tok, err := f.sg.SignJWT(token.Claims{
		Subject: "k1", Issuer: cpIssuer, Tenant: credential.DefaultTenant, IssuedAt: now, Expiry: now.Add(time.Hour),
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := authorize(f.p, presented(tok)); v.Err != nil {
		t.Fatal(v.Err)
	}
	far := presented(tok)
	far.ClientIP = netip.MustParseAddr("192.0.2.1")
	if v := authorize(f.p, far); !errors.Is(v.Err, credential.ErrForbidden) {
		t.Fatalf("outside the CIDR: %+v", v)
	}
}

// BenchmarkAuthorizeHitJWT is an L1 hit on a derived JWT, which re-applies
// the token policy (issuer, expiry plus skew) on every hit.
func BenchmarkAuthorizeHitJWT(b *testing.B) {
	clk := &clock{now: time.Now()}
	key, _ := token.GenerateKey(token.EdDSA, nil)
	sg, _ := token.NewSigner([]token.SigningKey{key}, "")
	up := newUpstream()
	up.jwks, _ = json.Marshal(sg.PublicJWKS(clk.Now()))
	pol, err := token.NewPolicy(cpIssuer, []token.RetiredIssuer{{Issuer: oldIssuer, ExpiresAt: clk.Now().Add(time.Hour)}}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	up.policy.Store(pol)
	p, err := pipeline.New(up, pipeline.Options{Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	tok, err := sg.SignJWT(token.Claims{Subject: "k1", Issuer: oldIssuer, Tenant: credential.DefaultTenant, IssuedAt: clk.Now(), Expiry: clk.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	pr := presented(tok)
	authorize(p, pr)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v := p.Authorize(ctx, pr); v.Err != nil || v.Cache != extauthz.CacheHit {
			b.Fatal(v.Err)
		}
	}
}

// TestJWT_WithdrawnSigningKeyEndsCachedVerdicts: once the control plane
// stops publishing a signing key (it was compromised, say), the verdicts
// that key verified stop at the sidecar's next key-set fetch; before, a
// cached allow lasted until the token's own expiry.
func TestJWT_WithdrawnSigningKeyEndsCachedVerdicts(t *testing.T) {
	f := newJWTFixture(t, mustPolicy(t, cpIssuer, nil, time.Minute))
	old := f.sign(t, cpIssuer, 0, time.Hour)
	if v := authorize(f.p, presented(old)); v.Err != nil {
		t.Fatalf("before the withdrawal: %+v", v)
	}
	f.p.Wait()
	if v := authorize(f.p, presented(old)); v.Err != nil || v.Cache != extauthz.CacheHit {
		t.Fatalf("cached: %+v", v)
	}

	// The control plane replaces the key; a token of the new key makes the
	// sidecar fetch the new set (unknown kid).
	key, err := token.GenerateKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.sg, err = token.NewSigner([]token.SigningKey{key}, ""); err != nil {
		t.Fatal(err)
	}
	f.up.jwks, _ = json.Marshal(f.sg.PublicJWKS(f.clk.Now()))
	f.clk.Add(2 * time.Second)
	if v := authorize(f.p, presented(f.sign(t, cpIssuer, 0, time.Hour))); v.Err != nil {
		t.Fatalf("token of the new key: %+v", v)
	}
	if v := authorize(f.p, presented(old)); !errors.Is(v.Err, credential.ErrUnauthenticated) {
		t.Fatalf("token of the withdrawn key: %+v, want UNAUTHENTICATED", v)
	}
}
