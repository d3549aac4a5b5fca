package httpapi_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/httpapi"
)

// rawRequest writes req verbatim to a real connection to srv and reads the
// answer: the request target reaches the server exactly as an attacker
// writes it, unlike with an http.Client, which cleans it.
func rawRequest(t *testing.T, srv *httptest.Server, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHandler_UncleanPathNotEchoed: a request target that is not a clean path
// (`//`, `/./`, `/../`) is refused with a 404 that carries nothing of it. The
// standard mux would answer a 307 whose Location header and body repeat the
// cleaned path and the query, so a credential pasted into the URL came back
// in the answer (and in any cache or proxy log that records redirects).
func TestHandler_UncleanPathNotEchoed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newTestHandler(t, httpapi.Options{}))
	t.Cleanup(srv.Close)
	const secret = "talos_v2_PASTEDSECRET0123456789abcdef"
	for _, target := range []string{
		"//v2alpha1/admin/issuedApiKeys/" + secret,
		"/v2alpha1//admin/issuedApiKeys?page_token=" + secret,
		"/v2alpha1/./admin/issuedApiKeys/" + secret,
		"/v2alpha1/x/../admin/issuedApiKeys/" + secret,
		"/" + secret + "/.",
		"//health/alive?" + secret,
	} {
		resp, body := rawRequest(t, srv, "GET "+target+" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET <unclean path> = %d, want 404", resp.StatusCode)
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				if strings.Contains(v, "PASTEDSECRET") {
					t.Errorf("GET <unclean path>: header %s echoes the target: %q", k, v)
				}
			}
		}
		if strings.Contains(body, "PASTEDSECRET") {
			t.Errorf("GET <unclean path> = %d: the body echoes the target: %s", resp.StatusCode, body)
		}
	}
	// Clean paths are served as before.
	if resp, body := rawRequest(t, srv, "GET /health/alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health/alive = %d %s", resp.StatusCode, body)
	}
	if resp, body := rawRequest(t, srv, "GET /v2alpha1/admin/issuedApiKeys/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); resp.StatusCode == http.StatusTemporaryRedirect {
		t.Errorf("GET with a trailing slash = %d %s", resp.StatusCode, body)
	}
}

// TestHandler_LogMethodBounded: the request log names a standard method, any
// other as "_OTHER". A method is any token a client chooses, up to the header
// limit (64 KiB): logged raw, one unauthenticated request wrote ~60 KiB of
// log, a cheap way to fill the disk.
func TestHandler_LogMethodBounded(t *testing.T) {
	t.Parallel()
	var logBuf syncBuffer
	srv := httptest.NewServer(newTestHandlerLog(t, httpapi.Options{}, slog.New(slog.NewJSONHandler(&logBuf, nil))))
	t.Cleanup(srv.Close)
	method := "MARKER" + strings.Repeat("A", 8<<10)
	resp, _ := rawRequest(t, srv, method+" /v2alpha1/admin/issuedApiKeys HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	if resp.StatusCode < 400 {
		t.Errorf("%d-byte method = %d, want an error", len(method), resp.StatusCode)
	}
	resp, _ = rawRequest(t, srv, "PATCH /v2alpha1/admin/issuedApiKeys HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	_ = resp
	log := logBuf.String()
	if strings.Contains(log, "MARKER") {
		t.Errorf("the request log holds the raw method (%d bytes of log)", len(log))
	}
	if !strings.Contains(log, `"http_request.method":"_OTHER"`) || !strings.Contains(log, `"http_request.method":"PATCH"`) {
		t.Errorf("the request log does not name the methods as _OTHER and PATCH:\n%.2000s", log)
	}
}
