package httpapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/controlplane/httpapi"
)

const (
	adminToken   = "admin-token-that-is-long-enough-0123456789"
	sidecarToken = "sidecar-token-that-is-long-enough-012345678"
)

func bearer(tok string) string { return "Bearer " + tok }

// TestHandler_AuthByResolvedMethod: the HTTP API is authorized by the RPC
// method a request resolves to, with the rule of the gRPC listener, so no
// spelling of a path reaches an admin method without a token, and a sidecar
// token never does.
func TestHandler_AuthByResolvedMethod(t *testing.T) {
	t.Parallel()
	both := grpcapi.NewTokenAuth([]string{adminToken}, []string{sidecarToken})
	h := newTestHandler(t, httpapi.Options{Auth: both})

	list := "/v2alpha1/admin/issuedApiKeys"
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{bearer("wrong-token-that-is-long-enough-0123456789"), http.StatusUnauthorized},
		{bearer(sidecarToken), http.StatusForbidden},
		{"Basic " + adminToken, http.StatusUnauthorized},
		{bearer(adminToken), http.StatusOK},
		{"bearer " + adminToken, http.StatusOK},
	} {
		w := serve(h, "GET", list, nil, "Authorization", tc.auth)
		if w.Code != tc.want {
			t.Errorf("GET %s with %q = %d %s, want %d", list, tc.auth, w.Code, w.Body, tc.want)
		}
		if tc.want == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: %v", w.Header())
		}
	}

	// Odd spellings of admin paths, without a token: each is refused or
	// matches no route; none answers.
	for _, tc := range []struct{ method, path, ctype string }{
		{"GET", "//v2alpha1/admin/issuedApiKeys", ""},
		{"GET", "/v2alpha1//admin/issuedApiKeys", ""},
		{"GET", "/v2alpha1/admin%2FissuedApiKeys", ""},
		{"GET", "/v2alpha1/%61dmin/issuedApiKeys", ""},
		{"GET", "/V2ALPHA1/admin/issuedApiKeys", ""},
		{"GET", "/v2alpha1/ADMIN/issuedApiKeys", ""},
		{"GET", "/v2alpha1/admin/./issuedApiKeys", ""},
		{"GET", "/v2alpha1/x/../admin/issuedApiKeys", ""},
		{"GET", "/v2alpha1/admin/issuedApiKeys/", ""},
		{"GET", "/v2alpha1/admin/issuedApiKeys?x=1", ""},
		{"GET", "/v2alpha1/admin/issuedApiKeys;x=1", ""},
		{"POST", "/v2alpha1/admin/apiKeys%3Averify", "application/json"},
		{"POST", "/v2alpha1/admin/apiKeys:verify", "application/json"},
		{"POST", "/v2alpha1/admin/issuedApiKeys", "application/x-www-form-urlencoded"},
	} {
		w := serve(h, tc.method, tc.path, []byte(`{"credential":"x","name":"n","actor_id":"a"}`), "Content-Type", tc.ctype)
		if w.Code < 300 {
			t.Errorf("%s %s without a token = %d %s: an admin method answered", tc.method, tc.path, w.Code, w.Body)
		}
		if w.Code == http.StatusOK || w.Code == http.StatusCreated || strings.Contains(w.Body.String(), "issued_api_keys") {
			t.Errorf("%s %s leaked an answer: %s", tc.method, tc.path, w.Body)
		}
	}

	// The public surface needs nothing.
	if w := serve(h, "GET", "/v2alpha1/derivedKeys/jwks.json", nil); w.Code != http.StatusOK {
		t.Errorf("JWKS = %d", w.Code)
	}
	if w := serve(h, "POST", "/v2alpha1/apiKeys:selfRevoke", []byte(`{"credential":"unknown-key-0123456789"}`)); w.Code != http.StatusNotFound {
		t.Errorf("self-revoke of an unknown key = %d %s, want 404", w.Code, w.Body)
	}

	// Only sidecar tokens: the admin API stays open, but never to a sidecar
	// token.
	side := newTestHandler(t, httpapi.Options{Auth: grpcapi.NewTokenAuth(nil, []string{sidecarToken})})
	if w := serve(side, "GET", list, nil); w.Code != http.StatusOK {
		t.Errorf("sidecar tokens only, no token = %d, want 200 (admin API open)", w.Code)
	}
	if w := serve(side, "GET", list, nil, "Authorization", bearer(sidecarToken)); w.Code != http.StatusForbidden {
		t.Errorf("sidecar tokens only, sidecar token = %d, want 403", w.Code)
	}
}

// TestHandler_RequiresJSON: a body in any other media type than
// application/json is refused with 415 before anything is written, so a web
// page cannot import a key cross-site without a CORS preflight.
func TestHandler_RequiresJSON(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, httpapi.Options{})
	body := []byte(`{"raw_key":"sk_live_cross_site_0123456789","name":"n","actor_id":"a"}`)
	for _, ct := range []string{"", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/merge-patch+json", "application/json; charset=latin1", "application/jsonx", "garbage/;;"} {
		w := serve(h, "POST", "/v2alpha1/admin/importedApiKeys", body, "Content-Type", ct)
		if w.Code != http.StatusUnsupportedMediaType || !strings.Contains(w.Body.String(), `"UNSUPPORTED_MEDIA_TYPE"`) {
			t.Errorf("Content-Type %q = %d %s, want 415 UNSUPPORTED_MEDIA_TYPE", ct, w.Code, w.Body)
		}
	}
	// An empty POST without a Content-Type (fetch no-cors) is refused too.
	if w := serve(h, "POST", "/v2alpha1/admin/issuedApiKeys/00000000-0000-4000-8000-000000000000:rotate", nil, "Content-Type", ""); w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("empty POST without Content-Type = %d, want 415", w.Code)
	}
	if w := serve(h, "GET", "/v2alpha1/admin/importedApiKeys", nil); !strings.Contains(w.Body.String(), `"imported_api_keys":[]`) && w.Body.String() != "{}" {
		t.Fatalf("a refused import was written: %s", w.Body)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8"} {
		w := serve(h, "POST", "/v2alpha1/admin/apiKeys:verify", []byte(`{"credential":"x"}`), "Content-Type", ct)
		if w.Code != http.StatusOK {
			t.Errorf("Content-Type %q = %d %s, want 200", ct, w.Code, w.Body)
		}
	}
	// GET and DELETE without a body need no Content-Type.
	if w := serve(h, "GET", "/v2alpha1/admin/issuedApiKeys", nil, "Content-Type", ""); w.Code != http.StatusOK {
		t.Errorf("GET without Content-Type = %d", w.Code)
	}
}

// TestHandler_HostCheck: while the admin API has no tokens it answers only
// loopback and configured Host names (DNS rebinding); the public surface and
// an authenticated admin API answer any Host.
func TestHandler_HostCheck(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, httpapi.Options{AllowedHosts: []string{"Talos.Internal", "10.1.2.3"}, BindHost: "192.0.2.7"})
	list := "/v2alpha1/admin/issuedApiKeys"
	for host, want := range map[string]int{
		"localhost": 200, "localhost:4420": 200, "LOCALHOST.": 200, "127.0.0.1:4420": 200, "127.8.9.10": 200,
		"[::1]:4420": 200, "[::1]": 200, "[::ffff:127.0.0.1]:1": 200,
		"talos.internal:4420": 200, "TALOS.INTERNAL": 200, "10.1.2.3:80": 200, "192.0.2.7:4420": 200,
		"evil.example": 421, "evil.example:4420": 421, "localhost.evil.example": 421, "127.0.0.1.nip.io": 421,
		"": 421, "0.0.0.0:4420": 421, "[::]:4420": 421, "10.1.2.4": 421,
	} {
		w := serve(h, "GET", list, nil, "Host", host)
		if w.Code != want {
			t.Errorf("Host %q = %d %s, want %d", host, w.Code, w.Body, want)
		}
		if want == 421 && !strings.Contains(w.Body.String(), `"HOST_NOT_ALLOWED"`) {
			t.Errorf("Host %q: body %s, want HOST_NOT_ALLOWED", host, w.Body)
		}
	}
	if w := serve(h, "GET", "/v2alpha1/derivedKeys/jwks.json", nil, "Host", "evil.example"); w.Code != 200 {
		t.Errorf("JWKS under a foreign Host = %d, want 200 (public)", w.Code)
	}
	// An unspecified bind host adds nothing.
	if w := serve(newTestHandler(t, httpapi.Options{BindHost: "0.0.0.0"}), "GET", list, nil, "Host", "0.0.0.0"); w.Code != 421 {
		t.Errorf("Host 0.0.0.0 with bind 0.0.0.0 = %d, want 421", w.Code)
	}
	auth := newTestHandler(t, httpapi.Options{Auth: grpcapi.NewTokenAuth([]string{adminToken}, nil)})
	if w := serve(auth, "GET", list, nil, "Host", "evil.example", "Authorization", bearer(adminToken)); w.Code != 200 {
		t.Errorf("authenticated admin call under any Host = %d, want 200", w.Code)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHandler_NoInputInLogOrErrors: a credential pasted into a URL path
// reaches neither the request log nor the answer; decoding errors never echo
// the body.
func TestHandler_NoInputInLogOrErrors(t *testing.T) {
	t.Parallel()
	var logBuf syncBuffer
	h := newTestHandlerLog(t, httpapi.Options{}, slog.New(slog.NewJSONHandler(&logBuf, nil)))
	w := serve(h, "POST", "/v2alpha1/admin/issuedApiKeys", []byte(`{"name":"n","actor_id":"a"}`))
	if w.Code != http.StatusCreated {
		t.Fatalf("issue = %d %s", w.Code, w.Body)
	}
	var issued struct {
		Secret string `json:"secret"`
		Key    struct {
			ID string `json:"key_id"`
		} `json:"issued_api_key"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &issued); err != nil || issued.Secret == "" {
		t.Fatalf("issue: %v %s", err, w.Body)
	}
	secret := issued.Secret
	for _, req := range []struct{ method, path string }{
		{"GET", "/v2alpha1/admin/issuedApiKeys/" + secret},
		{"GET", "/v2alpha1/admin/importedApiKeys/" + secret},
		{"POST", "/v2alpha1/admin/issuedApiKeys/" + secret + ":revoke"},
		{"GET", "/v2alpha1/nothing/" + secret},
		{"GET", "/" + secret},
		{"GET", "/v2alpha1/admin/issuedApiKeys?page_size=" + secret},
		{"GET", "/v2alpha1/admin/issuedApiKeys?filter=" + secret},
	} {
		w := serve(h, req.method, req.path, []byte(`{}`))
		if w.Code < 400 {
			t.Errorf("%s %s = %d, want an error", req.method, "<path with the secret>", w.Code)
		}
		if strings.Contains(w.Body.String(), secret) {
			t.Errorf("%s <path with the secret> = %d: the body echoes the secret: %s", req.method, w.Code, w.Body)
		}
	}
	if strings.Contains(logBuf.String(), secret) {
		t.Errorf("the request log holds the secret:\n%s", logBuf.String())
	}
	if !strings.Contains(logBuf.String(), `"http_request.route":"/v2alpha1/admin/issuedApiKeys/{key_id}"`) {
		t.Errorf("the request log does not name the route pattern:\n%s", logBuf.String())
	}
	// A well-formed key ID is still named in a 404 (Ory Talos does).
	if w := serve(h, "GET", "/v2alpha1/admin/issuedApiKeys/00000000-0000-4000-8000-000000000000", nil); w.Code != 404 ||
		!strings.Contains(w.Body.String(), `"key_id":"00000000-0000-4000-8000-000000000000"`) {
		t.Errorf("404 of a well-formed key ID = %d %s, want it named", w.Code, w.Body)
	}

	const marker = "MARKER-sk_live_pasted_0123456789"
	for _, body := range []string{
		`{"name":"` + marker,
		`{"` + marker + `":1}`,
		`{"name":` + marker + `}`,
		`{"name":"n","actor_id":"a","ttl":"` + marker + `"}`,
		`{"name":"n","actor_id":"a","scopes":"` + marker + `"}`,
		`{"name":"n","actor_id":"a","visibility":"` + marker + `"}`,
		`{"name":"n","actor_id":"a","metadata":"` + marker + `"}`,
		`["` + marker + `"]`,
		"{\"name\":\"\xff" + marker + "\"}",
	} {
		w := serve(h, "POST", "/v2alpha1/admin/issuedApiKeys", []byte(body))
		if w.Code != http.StatusBadRequest {
			t.Errorf("POST %q = %d, want 400", body, w.Code)
		}
		if strings.Contains(w.Body.String(), "MARKER") {
			t.Errorf("POST %q: 400 body echoes the input: %s", body, w.Body)
		}
	}
	if strings.Contains(logBuf.String(), "MARKER") {
		t.Errorf("the log holds request input:\n%s", logBuf.String())
	}
}
