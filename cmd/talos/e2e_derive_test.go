package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	ory "github.com/ory/client-go"
)

// TestE2E_DeriveAndVerify derives JWTs and macaroons from a real key over the
// Ory SDK, verifies them statelessly, checks a JWKS consumer the project did
// not write (lestrrat-go/jwx) accepts the JWT with the published key set, and
// attenuates a macaroon offline with the CLI.
func TestE2E_DeriveAndVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testDerive(t, startServer(t, b.env...)) })
	}
}

func testDerive(t *testing.T, srv *testServer) {
	c := sdk(srv.http)
	ctx := t.Context()

	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(ctx).IssueApiKeyRequest(ory.IssueApiKeyRequest{
		Name: ptr("agent"), ActorId: ptr("svc-agent"), Scopes: []string{"read", "write"},
		Metadata: map[string]any{"team": "ml"}, Ttl: ptr("24h"),
	}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	parent := issued.GetSecret()

	// A JWT bound to an audience.
	d, resp, err := c.ApiKeysAPI.AdminDeriveToken(ctx).DeriveTokenRequest(ory.DeriveTokenRequest{
		Credential: &parent, Scopes: []string{"read"}, Ttl: ptr("10m"), Audiences: []string{"https://api.example"},
		CustomClaims: map[string]any{"run": "42", "sub": "ignored-reserved"},
	}).Execute()
	d = mustOK(t, "derive jwt", d, resp, err)
	jwtTok := d.Token.GetToken()
	if !strings.HasPrefix(jwtTok, "eyJ") || len(d.Token.Scopes) != 1 || d.Token.ExpireTime == nil {
		t.Fatalf("derive response = %+v", d.Token)
	}
	v, resp, err := c.ApiKeysAPI.AdminVerifyApiKey(ctx).VerifyApiKeyRequest(ory.VerifyApiKeyRequest{Credential: &jwtTok, ExpectedAudiences: []string{"https://api.example"}}).Execute()
	v = mustOK(t, "verify jwt", v, resp, err)
	if !v.GetIsValid() || v.GetKeyId() != issued.IssuedApiKey.GetKeyId() || len(v.Scopes) != 1 || v.Metadata["team"] != "ml" || v.Metadata["run"] != "42" {
		t.Fatalf("verify jwt = %+v", v)
	}
	if v := wantVerdict(t, c, jwtTok, false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_AUDIENCE_MISMATCH); v.GetErrorMessage() == "" {
		t.Error("audience mismatch without a message")
	}

	// An independent JWKS consumer verifies the JWT with the published set.
	set, err := jwk.Fetch(ctx, srv.http+"/.well-known/jwks.json")
	if err != nil {
		t.Fatalf("jwx fetch JWKS: %v", err)
	}
	parsed, err := jwt.Parse([]byte(jwtTok), jwt.WithKeySet(set), jwt.WithAudience("https://api.example"), jwt.WithIssuer("http://talos.test"))
	if err != nil {
		t.Fatalf("jwx verify: %v", err)
	}
	if sub, _ := parsed.Subject(); sub != issued.IssuedApiKey.GetKeyId() {
		t.Errorf("jwx sub = %q", sub)
	}
	// The wrapped Talos shape, as the Ory SDK reads it.
	jw, resp, err := c.ApiKeysAPI.GetJwks(ctx).Execute()
	jw = mustOK(t, "GetJwks", jw, resp, err)
	if len(jw.Jwks.Keys) == 0 || resp.Header.Get("Cache-Control") == "" {
		t.Fatalf("GetJwks = %+v (Cache-Control %q)", jw, resp.Header.Get("Cache-Control"))
	}

	// A macaroon, attenuated offline with the CLI to read only.
	d, resp, err = c.ApiKeysAPI.AdminDeriveToken(ctx).DeriveTokenRequest(ory.DeriveTokenRequest{
		Credential: &parent, Algorithm: ptr(ory.TOKENALGORITHM_TOKEN_ALGORITHM_MACAROON), Ttl: ptr("1h"),
	}).Execute()
	d = mustOK(t, "derive macaroon", d, resp, err)
	mac := d.Token.GetToken()
	if !strings.HasPrefix(mac, "mc_v1_") {
		t.Fatalf("macaroon = %.10q…", mac)
	}
	if v := wantVerdict(t, c, mac, true, ""); len(v.Scopes) != 2 {
		t.Fatalf("macaroon scopes = %v, want both", v.Scopes)
	}
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"token", "attenuate", mac, "--scopes", "read", "--expires-in", "5m", "--condition", "agent=build-42"}, nil, &out, &errOut); err != nil {
		t.Fatalf("talos token attenuate: %v %s", err, errOut.String())
	}
	narrowed := strings.TrimSpace(out.String())
	if v := wantVerdict(t, c, narrowed, true, ""); len(v.Scopes) != 1 || v.Scopes[0] != "read" || time.Until(v.GetExpireTime()) > 6*time.Minute {
		t.Fatalf("attenuated macaroon: scopes %v expires %v", v.Scopes, v.GetExpireTime())
	}
	if code, body := do(t, "POST", srv.http+"/v2alpha1/admin/apiKeys:verify", jsonBody(map[string]string{"credential": narrowed})); code != 200 || !strings.Contains(string(body), `"conditions":{"agent":"build-42"}`) {
		t.Errorf("verify of an attenuated macaroon = %d %s, want its conditions reported", code, body)
	}

	// Derive rules: scopes must be a subset (403), TTL within the parent's life (400),
	// a revoked parent is 403, a derived token cannot be revoked by its holder.
	for _, tc := range []struct {
		name string
		req  ory.DeriveTokenRequest
		code int
	}{
		{"scope not granted", ory.DeriveTokenRequest{Credential: &parent, Scopes: []string{"admin"}}, 403},
		{"ttl beyond parent", ory.DeriveTokenRequest{Credential: &parent, Ttl: ptr("48h")}, 400},
		{"unknown parent", ory.DeriveTokenRequest{Credential: ptr("sk_nope_0123456789")}, 401},
		{"derived parent", ory.DeriveTokenRequest{Credential: &jwtTok}, 400},
	} {
		_, resp, err := c.ApiKeysAPI.AdminDeriveToken(ctx).DeriveTokenRequest(tc.req).Execute()
		if err == nil || resp == nil || resp.StatusCode != tc.code {
			t.Errorf("%s: err=%v status=%v, want %d", tc.name, err, resp, tc.code)
		}
	}
	if code, body := do(t, "POST", srv.http+"/v2alpha1/apiKeys:selfRevoke", jsonBody(map[string]string{"credential": jwtTok})); code != 400 || !strings.Contains(string(body), "DERIVED_TOKEN_NOT_REVOCABLE") {
		t.Errorf("self-revoke of a JWT = %d %s, want 400", code, body)
	}
	resp, err = c.ApiKeysAPI.AdminRevokeIssuedApiKey(ctx, issued.IssuedApiKey.GetKeyId()).
		AdminRevokeIssuedApiKeyBody(ory.AdminRevokeIssuedApiKeyBody{Reason: ptr(ory.REVOCATIONREASON_REVOCATION_REASON_KEY_COMPROMISE)}).Execute()
	mustOK(t, "revoke parent", 0, resp, err)
	_, resp, err = c.ApiKeysAPI.AdminDeriveToken(ctx).DeriveTokenRequest(ory.DeriveTokenRequest{Credential: &parent}).Execute()
	if err == nil || resp.StatusCode != 403 {
		t.Errorf("derive from a revoked parent: %v %v, want 403", err, resp)
	}
	for _, tok := range []string{jwtTok, mac, narrowed} {
		if strings.Contains(srv.log.String(), tok) {
			t.Error("a derived token appeared in the log")
		}
	}
}

// TestE2E_SigningKeyPersistsAcrossRestarts checks that a generated signing key
// is stored (sealed) in the database, so a restarted or second replica
// verifies tokens the first one signed.
func TestE2E_SigningKeyPersistsAcrossRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	dsn := "TALOS_DB_DSN=sqlite://" + dir + "/shared.db"
	first := startServer(t, dsn)
	second := startServer(t, dsn)
	c1, c2 := sdk(first.http), sdk(second.http)
	issued, resp, err := c1.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(ory.IssueApiKeyRequest{Name: ptr("k"), ActorId: ptr("a")}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	d, resp, err := c1.ApiKeysAPI.AdminDeriveToken(t.Context()).DeriveTokenRequest(ory.DeriveTokenRequest{Credential: issued.Secret}).Execute()
	d = mustOK(t, "derive", d, resp, err)
	wantVerdict(t, c2, d.Token.GetToken(), true, "")
	k1, k2 := fetchJWKS(t, first.http), fetchJWKS(t, second.http)
	if k1 != k2 {
		t.Errorf("replicas publish different key sets:\n%s\n%s", k1, k2)
	}
}

func fetchJWKS(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", base+"/.well-known/jwks.json", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("jwks: %v %s", err, b)
	}
	return string(b)
}

// TestE2E_ConfiguredSigningKeys generates an RSA key with `talos jwk
// generate`, configures it through a file:// URL, and checks derived JWTs
// are signed with it and that `talos jwk get` shows only its public part.
func TestE2E_ConfiguredSigningKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"jwk", "generate", "rsa", "--kid", "ops-2026"}, nil, &out, &errOut); err != nil {
		t.Fatalf("jwk generate: %v %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `"d":`) {
		t.Fatalf("jwk generate printed no private key")
	}
	path := t.TempDir() + "/jwks.json"
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "TALOS_CREDENTIALS_DERIVED_TOKENS_JWT_SIGNING_KEYS_URLS=file://"+path)
	c := sdk(srv.http)
	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(ory.IssueApiKeyRequest{Name: ptr("k"), ActorId: ptr("a")}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	d, resp, err := c.ApiKeysAPI.AdminDeriveToken(t.Context()).DeriveTokenRequest(ory.DeriveTokenRequest{Credential: issued.Secret}).Execute()
	d = mustOK(t, "derive", d, resp, err)
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(d.Token.GetToken(), ".")[0])
	if !strings.Contains(string(header), `"alg":"RS256"`) || !strings.Contains(string(header), `"kid":"ops-2026"`) {
		t.Errorf("JWT header = %s, want RS256 and kid ops-2026", header)
	}
	wantVerdict(t, c, d.Token.GetToken(), true, "")
	out.Reset()
	if err := run(t.Context(), []string{"jwk", "get", "--endpoint", srv.http}, nil, &out, &errOut); err != nil {
		t.Fatalf("jwk get: %v", err)
	}
	if !strings.Contains(out.String(), "ops-2026") || strings.Contains(out.String(), `"d":`) {
		t.Errorf("jwk get = %s, want the public key only", out.String())
	}
}
