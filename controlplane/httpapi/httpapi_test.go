package httpapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/controlplane/httpapi"
	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/apikey"
)

// newTestHandler builds the real stack (SQLite in t.TempDir(), keys service,
// gRPC adapter) behind the HTTP handler.
func newTestHandler(t testing.TB, opts httpapi.Options) http.Handler {
	t.Helper()
	return newTestHandlerLog(t, opts, nil)
}

// newTestHandlerLog is newTestHandler logging to log (nil: nowhere).
func newTestHandlerLog(t testing.TB, opts httpapi.Options, log *slog.Logger) http.Handler {
	t.Helper()
	st, err := sqlite.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "t.db"), sqlite.Options{AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secrets, err := apikey.NewSecretSet([]byte("httpapi-test-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := keys.New(keys.Options{Issuer: "http://t", Prefix: "talos"}, keys.Deps{Store: st, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(t.Context(), opts, httpapi.Deps{API: grpcapi.New(grpcapi.Deps{Keys: svc}), Ready: svc.Ping, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, method, path string, body []byte, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Host = "localhost:4420" // a Host the unauthenticated admin API answers
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			r.Host = header[i+1]
			continue
		}
		if header[i+1] == "" {
			r.Header.Del(header[i])
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// FuzzDecode posts arbitrary bodies to the JSON endpoints: the answer is never
// a 5xx and is always JSON (an AIP-193 error or a response).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"credential":"x"}`, `{"name":"n","actor_id":"a"}`, `{"name":`, "\xff", `{"requests":[{"credential":"a"}]}`, `{"name":"n","actor_id":"a","metadata":{"a":[1,{"b":null}]},"ttl":"1y2mo"}`} {
		f.Add(s)
	}
	h := newTestHandler(f, httpapi.Options{MaxBodyBytes: 1 << 16})
	paths := []string{"/v2alpha1/admin/apiKeys:verify", "/v2alpha1/admin/issuedApiKeys", "/v2alpha1/admin/apiKeys:batchVerify", "/v2alpha1/admin/importedApiKeys", "/v2alpha1/apiKeys:selfRevoke"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			w := serve(h, "POST", p, []byte(body))
			if w.Code >= 500 {
				t.Fatalf("POST %s %q = %d %s", p, body, w.Code, w.Body)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("POST %s %q: body is not JSON: %q", p, body, w.Body)
			}
		}
	})
}

func TestHandler_StatusCodesAndHeaders(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, httpapi.Options{})
	w := serve(h, "POST", "/v2alpha1/admin/issuedApiKeys", []byte(`{"name":"n","actor_id":"a"}`), "X-Request-ID", "req-1")
	if w.Code != http.StatusCreated {
		t.Fatalf("issue = %d %s", w.Code, w.Body)
	}
	for k, v := range map[string]string{"X-Request-ID": "req-1", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	var issued struct {
		Key struct {
			ID string `json:"key_id"`
		} `json:"issued_api_key"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &issued); err != nil {
		t.Fatal(err)
	}
	w = serve(h, "POST", "/v2alpha1/admin/issuedApiKeys/"+issued.Key.ID+":revoke", []byte(`{"reason":"REVOCATION_REASON_SUPERSEDED"}`))
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("revoke = %d %q, want 204 with no body", w.Code, w.Body)
	}
	w = serve(h, "POST", "/v2alpha1/admin/issuedApiKeys/"+issued.Key.ID+":revoke", []byte(`{"reason":"REVOCATION_REASON_SUPERSEDED"}`))
	if w.Code != http.StatusConflict {
		t.Fatalf("second revoke = %d, want 409", w.Code)
	}
	w = serve(h, "GET", "/v2alpha1/admin/issuedApiKeys", nil, "X-Request-ID", string(make([]byte, 200)))
	if len(w.Header().Get("X-Request-ID")) != 36 {
		t.Errorf("an over-long X-Request-ID must be replaced by a UUID, got %q", w.Header().Get("X-Request-ID"))
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src    httpapi.ClientIPSource
		header string
		value  string
		want   string
	}{
		{httpapi.SourceRemoteAddr, "X-Forwarded-For", "1.2.3.4", "192.0.2.1"},
		// The client wrote 1.2.3.4; the nearest proxy appended what it saw.
		{httpapi.SourceXForwardedFor, "X-Forwarded-For", "1.2.3.4, 5.6.7.8", "5.6.7.8"},
		{httpapi.SourceXForwardedFor, "X-Forwarded-For", "1.2.3.4,5.6.7.8:443", "5.6.7.8"},
		{httpapi.SourceXForwardedFor, "X-Forwarded-For", "garbage", "192.0.2.1"},
		{httpapi.SourceXRealIP, "X-Real-IP", "2001:db8::1", "2001:db8::1"},
		{httpapi.SourceCFConnectingIP, "CF-Connecting-IP", "::ffff:10.0.0.1", "10.0.0.1"},
		{httpapi.SourceTrueClientIP, "True-Client-IP", "", "192.0.2.1"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.value != "" {
			r.Header.Set(tc.header, tc.value)
		}
		if got := httpapi.ClientIP(tc.src, r); got != netip.MustParseAddr(tc.want) {
			t.Errorf("ClientIP(%v, %s=%q) = %v, want %s", tc.src, tc.header, tc.value, got, tc.want)
		}
	}
	// Two header lines: a client-sent one, then the proxy's.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("X-Forwarded-For", "10.0.0.1")
	r.Header.Add("X-Forwarded-For", "203.0.113.7")
	if got := httpapi.ClientIP(httpapi.SourceXForwardedFor, r); got != netip.MustParseAddr("203.0.113.7") {
		t.Errorf("two X-Forwarded-For lines gave %v, want the last one's", got)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "not-an-address"
	if got := httpapi.ClientIP(httpapi.SourceRemoteAddr, r); got.IsValid() {
		t.Errorf("unparsable remote address gave %v, want the zero Addr (fail closed)", got)
	}
}

// TestHandler_DeadDatabaseIs503 closes the database under a running handler:
// every call fails closed with 503, promptly.
func TestHandler_DeadDatabaseIs503(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "t.db"), sqlite.Options{AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	secrets, _ := apikey.NewSecretSet([]byte("httpapi-test-secret-0123456789abcdef"))
	svc, err := keys.New(keys.Options{Issuer: "http://t", Prefix: "talos"}, keys.Deps{Store: st, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(t.Context(), httpapi.Options{}, httpapi.Deps{API: grpcapi.New(grpcapi.Deps{Keys: svc}), Ready: svc.Ping})
	if err != nil {
		t.Fatal(err)
	}
	w := serve(h, "POST", "/v2alpha1/admin/issuedApiKeys", []byte(`{"name":"n","actor_id":"a"}`))
	if w.Code != http.StatusCreated {
		t.Fatalf("issue = %d", w.Code)
	}
	st.Close()
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v2alpha1/admin/apiKeys:verify", `{"credential":"sk_live_some_imported_key"}`},
		{"POST", "/v2alpha1/admin/issuedApiKeys", `{"name":"n","actor_id":"a"}`},
		{"GET", "/v2alpha1/admin/issuedApiKeys", ``},
	} {
		w := serve(h, req.method, req.path, []byte(req.body))
		if w.Code != http.StatusServiceUnavailable || !bytes.Contains(w.Body.Bytes(), []byte(`"SERVICE_UNAVAILABLE"`)) {
			t.Errorf("%s %s with a dead database = %d %s, want 503 SERVICE_UNAVAILABLE", req.method, req.path, w.Code, w.Body)
		}
	}
	if w := serve(h, "GET", "/health/ready", nil); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/health/ready with a dead database = %d, want 503", w.Code)
	}
}
