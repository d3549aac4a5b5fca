package extauthz_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
)

func httpGet(t *testing.T, url string, h map[string]string) *http.Response {
	t.Helper()
	return httpDo(t, http.MethodGet, url, h, nil)
}

func httpDo(t *testing.T, method, url string, h map[string]string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHTTPHandler_check(t *testing.T) {
	t.Parallel()
	fake := newFake()
	s := mustServer(t, fake, extauthz.Options{RemoveCredential: true, MetadataHeaders: []string{"plan"}})
	srv := newTestHTTP(t, s)
	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		status  int
		want    map[string]string // response headers that must be present
		absent  []string
		reason  string
	}{
		{name: "allow", method: "GET", path: "/anything/at/all", headers: map[string]string{"Authorization": "Bearer good", "X-Talos-Actor-Id": "forged", "X-Talos-Foo": "x"},
			status: 200, want: map[string]string{
				"X-Talos-Key-Id": string(goodResult.KeyID), "X-Talos-Actor-Id": "user-42", "X-Talos-Scopes": "read write",
				"X-Talos-Tenant": string(credential.DefaultTenant), "X-Talos-Credential-Type": "issued", "X-Talos-Meta-Plan": "pro",
				"X-Envoy-Auth-Headers-To-Remove": "authorization, x-api-key, x-talos-foo",
			}},
		{name: "any method", method: "DELETE", path: "/", headers: map[string]string{"X-Api-Key": "good"}, status: 200,
			want: map[string]string{"X-Talos-Key-Id": string(goodResult.KeyID)}},
		{name: "missing", method: "GET", path: "/auth", status: 401, reason: "CREDENTIAL_MISSING",
			want: map[string]string{"Www-Authenticate": challengeMissing, "Content-Type": "application/json"}, absent: []string{"X-Talos-Key-Id"}},
		{name: "ambiguous", method: "GET", path: "/auth", headers: map[string]string{"X-Api-Key": "good,revoked"}, status: 401, reason: "INVALID_API_KEY_FORMAT",
			want: map[string]string{"Www-Authenticate": challengeInvalid}},
		{name: "two credential headers", method: "GET", path: "/auth", headers: map[string]string{"Authorization": "Bearer good", "X-Api-Key": "revoked"},
			status: 401, reason: "INVALID_API_KEY_FORMAT", want: map[string]string{"Www-Authenticate": challengeInvalid}, absent: []string{"X-Talos-Key-Id"}},
		{name: "revoked", method: "GET", path: "/auth", headers: map[string]string{"X-Api-Key": "revoked"}, status: 401, reason: "API_KEY_REVOKED",
			want: map[string]string{"Www-Authenticate": challengeInvalid}},
		{name: "forbidden", method: "GET", path: "/auth", headers: map[string]string{"X-Api-Key": "elsewhere"}, status: 403, reason: "IP_NOT_ALLOWED",
			absent: []string{"Www-Authenticate"}},
		{name: "rate limited", method: "GET", path: "/auth", headers: map[string]string{"X-Api-Key": "limited"}, status: 429, reason: "TOO_MANY_REQUESTS",
			want: map[string]string{"Retry-After": "2"}},
		{name: "insufficient scope", method: "GET", path: "/auth", headers: map[string]string{"X-Api-Key": "good", "X-Talos-Scopes": "admin"}, status: 403,
			reason: "INSUFFICIENT_SCOPE", want: map[string]string{"Www-Authenticate": `Bearer realm="talos", error="insufficient_scope", scope="admin"`}},
		{name: "unavailable", method: "GET", path: "/auth", headers: map[string]string{"X-Api-Key": "broken"}, status: 503, reason: "SERVICE_UNAVAILABLE"},
		{name: "health is not ours", method: "GET", path: "/health/ready", headers: map[string]string{"X-Api-Key": "good"}, status: 404, absent: []string{"X-Talos-Key-Id"}},
		{name: "other API paths are not ours", method: "POST", path: "/v2alpha1/admin/apiKeys:batchVerify", headers: map[string]string{"X-Api-Key": "good"}, status: 404},
		{name: "verify takes POST only", method: "GET", path: extauthz.VerifyPath, status: 405, want: map[string]string{"Allow": "POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := httpDo(t, tt.method, srv.URL+tt.path, tt.headers, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			for k, v := range tt.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if v := resp.Header.Get(k); v != "" {
					t.Errorf("%s = %q, want none", k, v)
				}
			}
			if tt.reason != "" {
				var d denyJSON
				if err := json.Unmarshal([]byte(body), &d); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				if d.Error.Code != tt.status || d.Error.Reason != tt.reason || d.Error.Status == "" || d.Error.Message == "" {
					t.Errorf("body = %s", body)
				}
			}
			if tt.status == 200 && body != "" {
				t.Errorf("allow body = %q, want none", body)
			}
			if strings.Contains(body, "hunter2") || strings.Contains(body, "good") {
				t.Errorf("body leaks: %s", body)
			}
		})
	}
}

// wantVerifyJSON is what the control plane answers for a verdict: the
// apiconv conversion marshaled by controlplane/httpapi's marshaler
// (protojson with proto names, compacted).
func wantVerifyJSON(t *testing.T, res credential.Result, err error) string {
	t.Helper()
	b, merr := protojson.MarshalOptions{UseProtoNames: true}.Marshal(apiconv.VerifyResponse(res, err))
	if merr != nil {
		t.Fatal(merr)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// wantAPIError is the control plane's AIP-193 error body.
func wantAPIError(code int, status, reason, message string) map[string]any {
	return map[string]any{"error": map[string]any{
		"code": float64(code), "status": status, "message": message,
		"details": []any{map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "www.ory.com/talos"}},
	}}
}

func TestHTTPHandler_verify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		status    int
		cache     string
		json      func(t *testing.T) string // exact 200 body
		apiError  map[string]any
		calls     int64
		audiences []string
	}{
		{name: "valid", body: `{"credential":"good"}`, status: 200, cache: "HIT", calls: 1,
			json: func(t *testing.T) string { return wantVerifyJSON(t, goodResult, nil) }},
		{name: "stale", body: `{"credential":"stale"}`, status: 200, cache: "STALE", calls: 1,
			json: func(t *testing.T) string { return wantVerifyJSON(t, goodResult, nil) }},
		{name: "expired", body: `{"credential":"expired"}`, status: 200, cache: "MISS", calls: 1,
			json: func(t *testing.T) string {
				return wantVerifyJSON(t, credential.Result{KeyID: "k-expired", Status: credential.StateExpired}, credential.ErrExpired)
			}},
		{name: "unknown", body: `{"credential":"nope"}`, status: 200, cache: "MISS", calls: 1,
			json: func(t *testing.T) string { return wantVerifyJSON(t, credential.Result{}, credential.ErrNotFound) }},
		{name: "ip not allowed", body: `{"credential":"elsewhere"}`, status: 200, cache: "HIT", calls: 1,
			json: func(t *testing.T) string {
				return wantVerifyJSON(t, credential.Result{}, &credential.Error{Kind: credential.ErrForbidden, Reason: "IP_NOT_ALLOWED", Message: "The client address is not allowed."})
			}},
		{name: "proto field names", body: `{"credential":"good","expected_audiences":["a","b"]}`, status: 200, cache: "HIT", calls: 1,
			audiences: []string{"a", "b"}, json: func(t *testing.T) string { return wantVerifyJSON(t, goodResult, nil) }},
		{name: "JSON field names", body: `{"credential":"good","expectedAudiences":["c"]}`, status: 200, cache: "HIT", calls: 1,
			audiences: []string{"c"}, json: func(t *testing.T) string { return wantVerifyJSON(t, goodResult, nil) }},
		{name: "empty body", body: ``, status: 400, cache: "NONE",
			apiError: wantAPIError(400, "INVALID_ARGUMENT", "CREDENTIAL_REQUIRED", "credential is required")},
		{name: "empty credential", body: `{"credential":""}`, status: 400, cache: "NONE",
			apiError: wantAPIError(400, "INVALID_ARGUMENT", "CREDENTIAL_REQUIRED", "credential is required")},
		{name: "credential too long", body: `{"credential":"` + strings.Repeat("a", credential.MaxCredentialBytes+1) + `"}`, status: 400, cache: "NONE",
			apiError: wantAPIError(400, "INVALID_ARGUMENT", "BAD_REQUEST", "credential must be at most 8192 bytes")},
		{name: "malformed JSON", body: `{"credential": sk_live_secret}`, status: 400,
			apiError: wantAPIError(400, "INVALID_ARGUMENT", "BAD_REQUEST", "invalid request: the body is not a VerifyApiKeyRequest JSON object")},
		{name: "unknown field", body: `{"credential":"good","tenant":"x"}`, status: 400,
			apiError: wantAPIError(400, "INVALID_ARGUMENT", "BAD_REQUEST", "invalid request: the body is not a VerifyApiKeyRequest JSON object")},
		{name: "body over 64 KiB", body: `{"credential":"` + strings.Repeat("a", 64<<10) + `"}`, status: 413,
			apiError: wantAPIError(413, "INVALID_ARGUMENT", "REQUEST_ENTITY_TOO_LARGE", "request body exceeds the limit of 65536 bytes")},
		{name: "upstream down", body: `{"credential":"down"}`, status: 503, cache: "NONE", calls: 1,
			apiError: wantAPIError(503, "UNAVAILABLE", "SERVICE_UNAVAILABLE", "The service is temporarily unavailable.")},
		{name: "upstream timeout", body: `{"credential":"slow"}`, status: 503, cache: "NONE", calls: 1,
			apiError: wantAPIError(503, "UNAVAILABLE", "SERVICE_UNAVAILABLE", "The service is temporarily unavailable.")},
		{name: "internal error", body: `{"credential":"broken"}`, status: 503, cache: "NONE", calls: 1,
			apiError: wantAPIError(503, "UNAVAILABLE", "SERVICE_UNAVAILABLE", "The service is temporarily unavailable.")},
		{name: "invalid argument", body: `{"credential":"bad-arg"}`, status: 400, cache: "NONE", calls: 1,
			apiError: wantAPIError(400, "INVALID_ARGUMENT", "BAD_REQUEST", "tenant is not a UUID")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake()
			srv := newTestHTTP(t, mustServer(t, fake, extauthz.Options{}))
			resp := httpDo(t, http.MethodPost, srv.URL+extauthz.VerifyPath, map[string]string{"Content-Type": "application/json"}, strings.NewReader(tt.body))
			body := readAll(t, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := resp.Header.Get(extauthz.CacheHeader); got != tt.cache {
				t.Errorf("%s = %q, want %q", extauthz.CacheHeader, got, tt.cache)
			}
			if n := fake.calls.Load(); n != tt.calls {
				t.Errorf("Authorizer calls = %d, want %d", n, tt.calls)
			}
			if tt.json != nil {
				if want := tt.json(t); body != want {
					t.Errorf("body\n got %s\nwant %s", body, want)
				}
			}
			if tt.apiError != nil {
				var got map[string]any
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				if diff := cmp.Diff(tt.apiError, got); diff != "" {
					t.Errorf("error body (-want +got):\n%s", diff)
				}
			}
			if tt.audiences != nil {
				if diff := cmp.Diff(tt.audiences, fake.lastPresented().ExpectedAudiences); diff != "" {
					t.Errorf("audiences (-want +got):\n%s", diff)
				}
			}
			if strings.Contains(body, "secret") || strings.Contains(body, "hunter2") {
				t.Errorf("body leaks: %s", body)
			}
		})
	}
}

func TestHTTPHandler_verifyPresented(t *testing.T) {
	t.Parallel()
	fake := newFake()
	s := mustServer(t, fake, extauthz.Options{Tenant: "t-1", ClientIPHeaders: []string{"x-real-ip"}})
	srv := newTestHTTP(t, s)
	httpDo(t, http.MethodPost, srv.URL+extauthz.VerifyPath, map[string]string{"X-Real-Ip": "203.0.113.5"}, strings.NewReader(`{"credential":"good"}`))
	got := fake.lastPresented()
	if got.Tenant != "t-1" || got.ClientIP.String() != "203.0.113.5" || got.Credential != "good" {
		t.Errorf("Presented = %+v", got)
	}
}

// With HTTPPathPrefix, checks arrive as Envoy's http_service sends them,
// {path_prefix}{:path}, and are judged on the original path; nothing outside
// the prefix is a check, so no client request can reach the sidecar's own
// paths as one.
func TestHTTPHandler_pathPrefix(t *testing.T) {
	t.Parallel()
	fake := newFake()
	onlyOrders := goodResult
	onlyOrders.Type = credential.TypeMacaroon
	onlyOrders.Conditions = map[string]string{"path": "/orders"}
	fake.verdicts["orders"] = extauthz.Verdict{Result: onlyOrders, Cache: extauthz.CacheHit}
	srv := newTestHTTP(t, mustServer(t, fake, extauthz.Options{HTTPPathPrefix: "/ext_authz"}))
	tests := []struct {
		name, method, path, key string
		forwarded               string // X-Forwarded-Uri, as forward-auth proxies send it
		status                  int
	}{
		{name: "check under the prefix", path: "/ext_authz/orders/1", key: "orders", status: 200},
		{name: "query kept out of the judged path", path: "/ext_authz/orders/1?x=/admin", key: "orders", status: 200},
		{name: "condition judged without the prefix", path: "/ext_authz/admin", key: "orders", status: 403},
		{name: "climbing out of the condition", path: "/ext_authz/orders/../admin", key: "orders", status: 403},
		{name: "plain key anywhere under the prefix", path: "/ext_authz/", key: "good", status: 200},
		{name: "prefix alone has no path to judge", path: "/ext_authz", key: "orders", status: 403},
		{name: "prefix alone, plain key", path: "/ext_authz", key: "good", status: 200},
		{name: "forward-auth header still wins", path: "/ext_authz", key: "orders", forwarded: "/orders/2", status: 200},
		{name: "missing credential", path: "/ext_authz/orders", status: 401},
		{name: "outside the prefix", path: "/orders/1", key: "good", status: 404},
		{name: "prefix as a name prefix only", path: "/ext_authzx/orders", key: "good", status: 404},
		{name: "escaped prefix", path: "/ext%5Fauthz/orders", key: "good", status: 404},
		{name: "verify API is not a check", method: "POST", path: "/ext_authz/v2alpha1/admin/apiKeys:verify", key: "good", status: 200},
		{name: "health stays the process's", path: "/health/ready", key: "good", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := map[string]string{}
			if tt.key != "" {
				h["X-Api-Key"] = tt.key
			}
			if tt.forwarded != "" {
				h["X-Forwarded-Uri"] = tt.forwarded
			}
			resp := httpDo(t, methodOr(tt.method), srv.URL+tt.path, h, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if allowed := resp.Header.Get("X-Talos-Key-Id") != ""; allowed != (tt.status == 200) {
				t.Errorf("allowed = %v with status %d", allowed, resp.StatusCode)
			}
		})
	}
	// The check of /ext_authz/v2alpha1/admin/apiKeys:verify was a check,
	// not a verify call: the verify proxy answers JSON with "valid".
	resp := httpDo(t, http.MethodPost, srv.URL+"/ext_authz/v2alpha1/admin/apiKeys:verify", map[string]string{"X-Api-Key": "good"}, strings.NewReader(`{"credential":"garbage"}`))
	if body := readAll(t, resp.Body); body != "" || fake.lastPresented().Credential != "good" {
		t.Errorf("verify under the prefix: body %q, presented %q; want an empty allow of the header's key", body, fake.lastPresented().Credential)
	}
}

func TestOptions_pathPrefix(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/ext_authz", "/a/b-c.d~e_f", "/V1"} {
		if _, err := extauthz.New(newFake(), extauthz.Options{HTTPPathPrefix: p}); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"ext_authz", "/", "/a/", "//a", "/a//b", "/a/./b", "/..", "/a b", "/a%2Fb", "/a?b", "/é",
		"/v2alpha1", "/v2alpha1/x", "/health", "/health/ready"} {
		if _, err := extauthz.New(newFake(), extauthz.Options{HTTPPathPrefix: p}); err == nil {
			t.Errorf("%q: accepted", p)
		} else if !strings.Contains(err.Error(), "HTTP path prefix") {
			t.Errorf("%q: error %v does not name the option", p, err)
		}
	}
}

func methodOr(m string) string {
	if m == "" {
		return http.MethodGet
	}
	return m
}
