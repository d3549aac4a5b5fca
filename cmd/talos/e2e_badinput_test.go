package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

type aipError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type   string `json:"@type"`
			Reason string `json:"reason"`
			Domain string `json:"domain"`
		} `json:"details"`
	} `json:"error"`
}

func do(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func countIssued(t *testing.T, base string) int {
	t.Helper()
	code, b := do(t, "GET", base+"/v2alpha1/admin/issuedApiKeys?page_size=1000", nil)
	if code != 200 {
		t.Fatalf("list: %d %s", code, b)
	}
	var r struct {
		Keys []json.RawMessage `json:"issued_api_keys"`
	}
	_ = json.Unmarshal(b, &r)
	return len(r.Keys)
}

// TestE2E_BadInput sends every kind of bad request the issue lists and checks
// each gets the reference's 4xx with an AIP-193 body, and that nothing was
// written.
func TestE2E_BadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServer(t)
	base := srv.http
	issue := base + "/v2alpha1/admin/issuedApiKeys"
	valid := map[string]any{"name": "n", "actor_id": "a"}
	many := func(n int, item any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = item
		}
		return out
	}
	bigMeta := map[string]any{"blob": strings.Repeat("x", 64<<10)}
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		code   int
		reason string
	}{
		{"malformed JSON", "POST", issue, []byte(`{"name":`), 400, "BAD_REQUEST"},
		{"unknown field", "POST", issue, []byte(`{"name":"n","actor_id":"a","bogus":1}`), 400, "BAD_REQUEST"},
		{"wrong type", "POST", issue, []byte(`{"name":5,"actor_id":"a"}`), 400, "BAD_REQUEST"},
		{"invalid UTF-8", "POST", issue, []byte("{\"name\":\"\xff\xfe\",\"actor_id\":\"a\"}"), 400, "BAD_REQUEST"},
		{"unknown enum", "POST", issue, []byte(`{"name":"n","actor_id":"a","visibility":"KEY_VISIBILITY_BOGUS"}`), 400, "BAD_REQUEST"},
		{"missing name", "POST", issue, []byte(`{"actor_id":"a"}`), 400, "BAD_REQUEST"},
		{"bad ttl", "POST", issue, []byte(`{"name":"n","actor_id":"a","ttl":"soon"}`), 400, "BAD_REQUEST"},
		{"ttl too long", "POST", issue, []byte(`{"name":"n","actor_id":"a","ttl":"20y"}`), 400, "BAD_REQUEST"},
		{"bad CIDR", "POST", issue, []byte(`{"name":"n","actor_id":"a","ip_restriction":{"allowed_cidrs":["10.0.0.0/33"]}}`), 400, "BAD_REQUEST"},
		{"metadata over 64 KiB", "POST", issue, jsonBody(map[string]any{"name": "n", "actor_id": "a", "metadata": bigMeta}), 400, "BAD_REQUEST"},
		{"oversize body", "POST", issue, jsonBody(map[string]any{"name": strings.Repeat("n", 2<<20), "actor_id": "a"}), 413, "REQUEST_ENTITY_TOO_LARGE"},
		{"credential over 8192 bytes", "POST", base + "/v2alpha1/admin/apiKeys:verify", jsonBody(map[string]any{"credential": strings.Repeat("k", 8193)}), 400, "BAD_REQUEST"},
		{"empty credential", "POST", base + "/v2alpha1/admin/apiKeys:verify", []byte(`{}`), 400, "CREDENTIAL_REQUIRED"},
		{"101-item batchVerify", "POST", base + "/v2alpha1/admin/apiKeys:batchVerify", jsonBody(map[string]any{"requests": many(101, map[string]any{"credential": "x"})}), 400, "BAD_REQUEST"},
		{"1001-item import", "POST", base + "/v2alpha1/admin/importedApiKeys:batchCreate", jsonBody(map[string]any{"requests": many(1001, map[string]any{"raw_key": "k", "name": "n", "actor_id": "a"})}), 400, "BAD_REQUEST"},
		{"raw key over 8192 bytes", "POST", base + "/v2alpha1/admin/importedApiKeys", jsonBody(map[string]any{"raw_key": strings.Repeat("k", 8193), "name": "n", "actor_id": "a"}), 400, "BAD_REQUEST"},
		{"bad update_mask path", "PATCH", issue + "/00000000-0000-4000-8000-000000000000?update_mask=status", []byte(`{"name":"x"}`), 400, "BAD_REQUEST"},
		{"unknown key", "GET", issue + "/00000000-0000-4000-8000-000000000000", nil, 404, "API_KEY_NOT_FOUND"},
		{"bad page token", "GET", issue + "?page_token=AAAA", nil, 400, "BAD_REQUEST"},
		{"bad filter", "GET", issue + "?filter=name%3D%22x%22", nil, 400, "BAD_REQUEST"},
		{"revoke without reason", "POST", issue + "/00000000-0000-4000-8000-000000000000:revoke", []byte(`{}`), 400, "BAD_REQUEST"},
		{"unknown path", "GET", base + "/v2alpha1/nope", nil, 404, "NOT_FOUND"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("status = %d, want %d; body %s", code, tc.code, body)
			}
			var e aipError
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, body)
			}
			if e.Error.Code != tc.code || len(e.Error.Details) != 1 || e.Error.Details[0].Reason != tc.reason ||
				e.Error.Details[0].Type != "type.googleapis.com/google.rpc.ErrorInfo" || e.Error.Details[0].Domain != "www.ory.com/talos" {
				t.Fatalf("error body = %s, want code %d reason %s", body, tc.code, tc.reason)
			}
		})
	}
	if n := countIssued(t, base); n != 0 {
		t.Errorf("bad requests wrote %d keys", n)
	}
	// A valid request still works afterwards.
	if code, body := do(t, "POST", issue, jsonBody(valid)); code != 201 {
		t.Fatalf("valid issue: %d %s", code, body)
	}
	if srv.log.String() == "" {
		t.Fatal("no log captured")
	}
}

// TestE2E_GRPCAndModes checks the gRPC listener serves the same API and that
// `serve public` hides the admin surface.
func TestE2E_GRPCAndModes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServer(t)
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewApiKeysClient(conn)
	res, err := c.AdminIssueApiKey(t.Context(), &pb.IssueApiKeyRequest{Name: "grpc", ActorId: "a"})
	if err != nil {
		t.Fatalf("gRPC issue: %v", err)
	}
	v, err := c.AdminVerifyApiKey(t.Context(), &pb.VerifyApiKeyRequest{Credential: res.GetSecret()})
	if err != nil || !v.GetIsValid() {
		t.Fatalf("gRPC verify: %v %v", v, err)
	}
	// The same key over HTTP.
	code, body := do(t, "POST", srv.http+"/v2alpha1/admin/apiKeys:verify", jsonBody(map[string]string{"credential": res.GetSecret()}))
	if code != 200 || !strings.Contains(string(body), `"is_valid":true`) {
		t.Fatalf("HTTP verify: %d %s", code, body)
	}
	for _, p := range []string{"/health/alive", "/health/ready"} {
		for _, b := range []string{srv.http, srv.metrics} {
			if code, body := do(t, "GET", b+p, nil); code != 200 {
				t.Errorf("%s%s = %d %s", b, p, code, body)
			}
		}
	}
	code, body = do(t, "GET", srv.metrics+"/metrics", nil)
	for _, want := range []string{"go_goroutines", `talos_verify_total{credential_type="issued",result="valid"} 2`,
		`talos_http_requests_total{code="200",method="POST"}`, "talos_verify_duration_seconds_bucket"} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("/metrics = %d, missing %s", code, want)
		}
	}
	if strings.Contains(string(body), res.GetSecret()) || strings.Contains(string(body), res.GetIssuedApiKey().GetKeyId()) {
		t.Error("a credential or key ID appears in a metric label")
	}
	if code, body := do(t, "GET", srv.http+"/.well-known/jwks.json", nil); code != 200 || !strings.Contains(string(body), `"keys"`) {
		t.Errorf("/.well-known/jwks.json = %d %s", code, body)
	}
}

func TestE2E_ServePublicHidesAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServerMode(t, "public")
	code, _ := do(t, "POST", srv.http+"/v2alpha1/admin/issuedApiKeys", jsonBody(map[string]string{"name": "n", "actor_id": "a"}))
	if code != http.StatusNotFound {
		t.Errorf("admin path on serve public = %d, want 404", code)
	}
	code, body := do(t, "POST", srv.http+"/v2alpha1/apiKeys:selfRevoke", jsonBody(map[string]string{"credential": "sk_unknown_0123456789"}))
	if code != http.StatusNotFound || !strings.Contains(string(body), "API_KEY_NOT_FOUND") {
		t.Errorf("self-revoke of unknown key = %d %s, want 404 API_KEY_NOT_FOUND", code, body)
	}
	if code, _ := do(t, "GET", srv.http+"/v2alpha1/derivedKeys/jwks.json", nil); code != 200 {
		t.Errorf("jwks on serve public = %d", code)
	}
	_ = fmt.Sprint()
}

func TestE2E_AdminBearerTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	token := "admin-token-that-is-long-enough-0123456789"
	srv := startServer(t, "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS="+token)
	body := jsonBody(map[string]string{"name": "n", "actor_id": "a"})
	if code, b := do(t, "POST", srv.http+"/v2alpha1/admin/issuedApiKeys", body); code != http.StatusUnauthorized || !strings.Contains(string(b), "UNAUTHORIZED") {
		t.Fatalf("without token: %d %s, want 401", code, b)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.http+"/v2alpha1/admin/issuedApiKeys", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("with token: %d, want 201", resp.StatusCode)
	}
	// The public surface needs no token.
	if code, _ := do(t, "POST", srv.http+"/v2alpha1/apiKeys:selfRevoke", jsonBody(map[string]string{"credential": "unknown-credential-123"})); code != http.StatusNotFound {
		t.Errorf("self-revoke without token = %d, want 404", code)
	}
	if strings.Contains(srv.log.String(), token) {
		t.Error("the admin token appeared in the log")
	}
}
