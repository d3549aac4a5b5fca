package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	ory "github.com/ory/client-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// The configuration of the differential test: a skew other than the default,
// an issuer retired for good and one that expires while the test runs.
const (
	diffIssuer      = "http://talos.test" // serverEnv's
	diffRetired     = "http://talos-old.test"
	diffExpiring    = "http://talos-expiring.test"
	diffForeign     = "http://evil.test"
	diffSkew        = 90 * time.Second
	diffSecret      = "e2e-secret-that-is-long-enough-0123456789" // serverEnv's
	diffMacaroonKey = "talos/macaroon/v1/root-key"                // keys.macaroonLabel
	diffAudience    = "https://api.test"
)

// diffCase is one credential of the corpus, presented with audiences.
type diffCase struct {
	name      string
	cred      string
	audiences []string
	allow     bool
}

// diffVerdicts asks the control plane (HTTP AdminVerifyApiKey and gRPC
// Verifier.Verify) and the sidecar (ext_authz Check) about c and returns
// their allow/deny answers; a sidecar deny must be a verdict (401/403), never
// an outage.
func diffVerdicts(t *testing.T, c *ory.APIClient, v sidecarpb.VerifierClient, p *testProxy, tc diffCase) (admin, verifier, sidecar bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, resp, err := c.ApiKeysAPI.AdminVerifyApiKey(ctx).VerifyApiKeyRequest(ory.VerifyApiKeyRequest{
		Credential: &tc.cred, ExpectedAudiences: tc.audiences,
	}).Execute()
	r = mustOK(t, tc.name+": AdminVerifyApiKey", r, resp, err)
	vr, err := v.Verify(ctx, &sidecarpb.VerifyRequest{Credential: tc.cred, ExpectedAudiences: tc.audiences})
	if err != nil {
		t.Fatalf("%s: Verifier.Verify: %v", tc.name, err)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5555}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Host: "app.test", Headers: map[string]string{"x-api-key": tc.cred},
		}},
	}}
	if len(tc.audiences) > 0 {
		req.Attributes.ContextExtensions = map[string]string{"talos.audiences": strings.Join(tc.audiences, " ")}
	}
	cr, err := p.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("%s: Check: %v", tc.name, err)
	}
	sidecar = codes.Code(cr.GetStatus().GetCode()) == codes.OK
	if code := cr.GetDeniedResponse().GetStatus().GetCode(); !sidecar && code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("%s: the sidecar denied with %d, not a verdict", tc.name, code)
	}
	return r.GetIsValid(), vr.GetOutcome() == sidecarpb.Outcome_OUTCOME_VALID, sidecar
}

// runCorpus requires identical verdicts from all three, and the expected one.
func runCorpus(t *testing.T, phase string, c *ory.APIClient, v sidecarpb.VerifierClient, p *testProxy, corpus []diffCase) {
	t.Helper()
	for _, tc := range corpus {
		admin, verifier, sidecar := diffVerdicts(t, c, v, p, tc)
		if admin != verifier || admin != sidecar {
			t.Errorf("%s: %s: verdicts differ: AdminVerifyApiKey allow=%v, Verifier.Verify allow=%v, sidecar allow=%v", phase, tc.name, admin, verifier, sidecar)
		} else if admin != tc.allow {
			t.Errorf("%s: %s: allow=%v everywhere, want %v", phase, tc.name, admin, tc.allow)
		}
	}
}

// TestE2E_DifferentialVerdicts feeds one corpus of keys and derived tokens to
// a control plane and to a sidecar in front of it, over real sockets, and
// requires the same verdict from AdminVerifyApiKey, Verifier.Verify and the
// sidecar's ext_authz Check. The configuration has a 90s clock skew and a
// retired issuer that expires during the test: the sidecar learns both from
// the control plane (GetTokenPolicy), and both processes stop accepting the
// retired issuer at its expires_at, cached verdicts included (issue 11,
// findings 2 and 3).
func TestE2E_DifferentialVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	// The deployment's signing key, configured so that the test can sign
	// what the control plane would not (other issuers, odd times).
	key, err := token.GenerateKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	key.ID = "e2e-diff"
	jwks, err := token.MarshalJWKS([]token.SigningKey{key}, true)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner([]token.SigningKey{key}, "")
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := apikey.NewSecretSet([]byte(diffSecret))
	if err != nil {
		t.Fatal(err)
	}
	root := secrets.Derive(diffMacaroonKey)

	// The expiring issuer retires 15s from now: enough to start both
	// processes and see it accepted, short enough to wait for.
	expires := time.Now().Add(15 * time.Second).Truncate(time.Second)
	retired, _ := json.Marshal([]map[string]string{
		{"value": diffRetired, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
		{"value": diffExpiring, "expires_at": expires.UTC().Format(time.RFC3339)},
	})
	srv := startServer(t,
		"TALOS_CREDENTIALS_CLOCK_SKEW=90s",
		"TALOS_CREDENTIALS_ISSUER_RETIRED="+string(retired),
		"TALOS_CREDENTIALS_DERIVED_TOKENS_JWT_SIGNING_KEYS_URLS=base64://"+base64.StdEncoding.EncodeToString(jwks),
	)
	p := startProxy(t, srv.grpc)
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	verifier := sidecarpb.NewVerifierClient(conn)
	c := sdk(srv.http)

	now := time.Now().Truncate(time.Second)
	claims := func(iss string, iat, nbf, exp time.Duration) token.Claims {
		return token.Claims{
			Subject: "0b7e1c7a-3f0e-4d4a-9d43-2f1c2b3a4d5e", Issuer: iss, Tenant: credential.DefaultTenant,
			Scopes: []string{"read"}, IssuedAt: now.Add(iat), NotBefore: now.Add(nbf), Expiry: now.Add(exp),
		}
	}
	sign := func(cl token.Claims) string {
		t.Helper()
		tok, err := signer.SignJWT(cl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mint := func(cl token.Claims) string {
		t.Helper()
		tok, err := token.MintMacaroon(root, "mc", cl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := func(iss string) token.Claims { return claims(iss, 0, 0, time.Hour) }

	// First, while it is still accepted: the expiring issuer. Its verdicts
	// get cached at the sidecar, which must drop them at the expiry.
	expiring := []diffCase{
		{"jwt of the expiring retired issuer", sign(valid(diffExpiring)), nil, true},
		{"macaroon of the expiring retired issuer", mint(valid(diffExpiring)), nil, true},
	}
	runCorpus(t, "before the expiry", c, verifier, p, expiring)
	if !time.Now().Before(expires) {
		t.Fatalf("the processes took until the retired issuer's expiry to start; this test needs them up within 15s")
	}

	// API keys.
	secret, _ := issueKey(t, c, "read")
	revoked, revokedID := issueKey(t, c, "read")
	revokeKey(t, c, revokedID)
	raw := "sk_live_differential_imported_0123456789"
	imp, resp, err := c.ApiKeysAPI.AdminImportApiKey(t.Context()).ImportApiKeyRequest(ory.ImportApiKeyRequest{RawKey: &raw, Name: ptr("imp"), ActorId: ptr("a")}).Execute()
	mustOK(t, "import", imp, resp, err)
	rawRevoked := "sk_live_differential_imported_revoked_0123456789"
	impRevoked, resp, err := c.ApiKeysAPI.AdminImportApiKey(t.Context()).ImportApiKeyRequest(ory.ImportApiKeyRequest{RawKey: &rawRevoked, Name: ptr("imp"), ActorId: ptr("a")}).Execute()
	impRevoked = mustOK(t, "import", impRevoked, resp, err)
	resp, err = c.ApiKeysAPI.AdminRevokeImportedApiKey(t.Context(), impRevoked.GetKeyId()).
		AdminRevokeImportedApiKeyBody(ory.AdminRevokeImportedApiKeyBody{Reason: ptr(ory.REVOCATIONREASON_REVOCATION_REASON_KEY_COMPROMISE)}).Execute()
	mustOK(t, "revoke imported", 0, resp, err)

	// Tokens the control plane derives.
	derive := func(req ory.DeriveTokenRequest) string {
		t.Helper()
		req.Credential = &secret
		d, resp, err := c.ApiKeysAPI.AdminDeriveToken(t.Context()).DeriveTokenRequest(req).Execute()
		return mustOK(t, "derive", d, resp, err).Token.GetToken()
	}
	derivedJWT := derive(ory.DeriveTokenRequest{Ttl: ptr("10m")})
	boundJWT := derive(ory.DeriveTokenRequest{Ttl: ptr("10m"), Audiences: []string{diffAudience}})
	derivedMac := derive(ory.DeriveTokenRequest{Ttl: ptr("10m"), Algorithm: ptr(ory.TOKENALGORITHM_TOKEN_ALGORITHM_MACAROON)})
	attenuated, err := token.Attenuate(derivedMac, token.Scopes("read"), token.Expires(now.Add(5*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	// A signature with one byte changed, and a kid nobody published.
	parts := strings.Split(derivedJWT, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[10] ^= 0x01
	tampered := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	other, err := token.GenerateKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	other.ID = "nobody-published-this"
	otherSigner, err := token.NewSigner([]token.SigningKey{other}, "")
	if err != nil {
		t.Fatal(err)
	}
	unknownKID, err := otherSigner.SignJWT(valid(diffIssuer))
	if err != nil {
		t.Fatal(err)
	}

	corpus := []diffCase{
		{"issued key", secret, nil, true},
		{"revoked issued key", revoked, nil, false},
		{"unknown issued key", secret[:len(secret)-4] + "AAAA", nil, false},
		{"imported key", raw, nil, true},
		{"revoked imported key", rawRevoked, nil, false},
		{"unknown imported key", "sk_live_nobody_imported_this_0123456789", nil, false},

		{"derived jwt", derivedJWT, nil, true},
		{"audience-bound jwt, right audience", boundJWT, []string{diffAudience}, true},
		{"audience-bound jwt, wrong audience", boundJWT, []string{"https://other.test"}, false},
		{"audience-bound jwt, no audience", boundJWT, nil, false},
		{"tampered signature", tampered, nil, false},
		{"unknown kid", unknownKID, nil, false},
		{"foreign issuer, signed with the published key", sign(valid(diffForeign)), nil, false},
		{"retired issuer still active", sign(valid(diffRetired)), nil, true},
		{"expired within the skew", sign(claims(diffIssuer, -time.Hour, -time.Hour, -10*time.Second)), nil, true},
		{"expired beyond the skew", sign(claims(diffIssuer, -time.Hour, -time.Hour, -150*time.Second)), nil, false},
		{"not yet valid, within the skew", sign(claims(diffIssuer, 0, 10*time.Second, time.Hour)), nil, true},
		{"not yet valid, beyond the skew", sign(claims(diffIssuer, 0, 150*time.Second, time.Hour)), nil, false},

		{"derived macaroon", derivedMac, nil, true},
		{"attenuated macaroon", attenuated, nil, true},
		{"foreign-issuer macaroon", mint(valid(diffForeign)), nil, false},
		{"retired-issuer macaroon", mint(valid(diffRetired)), nil, true},
		{"macaroon expired within the skew", mint(claims(diffIssuer, -time.Hour, -time.Hour, -10*time.Second)), nil, true},
		{"macaroon expired beyond the skew", mint(claims(diffIssuer, -time.Hour, -time.Hour, -150*time.Second)), nil, false},
	}
	runCorpus(t, "before the expiry", c, verifier, p, corpus)
	if !time.Now().Before(expires) {
		t.Logf("the corpus ran past the retired issuer's expiry; the before-phase of the expiring issuer was checked first")
	}

	// At the expiry, not later: both processes evaluate it per request.
	time.Sleep(time.Until(expires))
	for i := range expiring {
		expiring[i].allow = false
	}
	runCorpus(t, "after the expiry", c, verifier, p, append(corpus, expiring...))
	if n := metric(t, p.metrics, "talos_proxy_jwt_local_verifications_total"); n == 0 {
		t.Error("the sidecar verified no JWT locally: the corpus did not exercise its policy")
	}
}

// TestMaxClockSkewAgrees: the configuration's bound on clock_skew is the one
// a token policy accepts, so a valid configuration always makes a policy that
// sidecars accept.
func TestMaxClockSkewAgrees(t *testing.T) {
	if token.MaxClockSkew != config.MaxClockSkew {
		t.Fatalf("token.MaxClockSkew = %v, config.MaxClockSkew = %v", token.MaxClockSkew, config.MaxClockSkew)
	}
}
