package extauthz_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

type conditionCase struct {
	name   string
	conds  map[string]string
	method string
	host   string
	path   string
	allow  bool
}

// conditionCases are judged the same by every transport.
var conditionCases = []conditionCase{
	{name: "method holds", conds: map[string]string{"method": "GET"}, method: "get", path: "/orders", allow: true},
	{name: "method differs", conds: map[string]string{"method": "GET"}, method: "POST", path: "/orders"},
	// strings.EqualFold folds U+017F LATIN SMALL LETTER LONG S to "s".
	{name: "method with a Unicode fold", conds: map[string]string{"method": "POST"}, method: "PO\u017fT", path: "/orders"},
	{name: "host holds", conds: map[string]string{"host": "api.example.com"}, host: "API.example.com", path: "/", allow: true},
	{name: "host with port holds", conds: map[string]string{"host": "api.example.com:8443"}, host: "api.example.com:8443", path: "/", allow: true},
	{name: "host differs", conds: map[string]string{"host": "api.example.com"}, host: "admin.example.com", path: "/"},
	// U+212A KELVIN SIGN folds to "k": a host the proxy routes elsewhere.
	{name: "host with a Unicode fold", conds: map[string]string{"host": "kiosk.example.com"}, host: "\u212aiosk.example.com", path: "/"},
	{name: "host with a trailing dot", conds: map[string]string{"host": "api.example.com"}, host: "api.example.com.", path: "/"},
	{name: "host with a port", conds: map[string]string{"host": "api.example.com"}, host: "api.example.com:8443", path: "/"},
	{name: "host list", conds: map[string]string{"host": "api.example.com"}, host: "api.example.com, evil.example.com", path: "/"},
	{name: "host with userinfo", conds: map[string]string{"host": "api.example.com"}, host: "x@api.example.com", path: "/"},
	{name: "path prefix holds", conds: map[string]string{"path": "/orders"}, path: "/orders/42?x=1", allow: true},
	{name: "path exact", conds: map[string]string{"path": "/orders"}, path: "/orders", allow: true},
	{name: "path with a harmless dot segment", conds: map[string]string{"path": "/orders"}, path: "/orders/./42", allow: true},
	{name: "path with a dot segment inside", conds: map[string]string{"path": "/orders"}, path: "/orders/a/../42", allow: true},
	{name: "path not on a segment boundary", conds: map[string]string{"path": "/orders"}, path: "/orders-admin"},
	{name: "path outside", conds: map[string]string{"path": "/orders"}, path: "/admin"},
	{name: "unknown condition fails closed", conds: map[string]string{"department": "sales"}, path: "/orders"},
	{name: "all must hold", conds: map[string]string{"method": "GET", "path": "/orders"}, method: "GET", path: "/admin"},
}

// pathAttacks are paths a macaroon limited to /read must not reach with.
var pathAttacks = []string{
	"/read/../admin",
	"/read/%2e%2e/admin",
	"/read/%2E%2E/admin",
	"/read/.%2e/admin",
	"/read/..%2fadmin",
	"/read/..%2Fadmin",
	"/read/%2e%2e%2fadmin",
	"/read//../admin",
	"/read/./../admin",
	"/read/x/../../admin",
	"/read/..;/admin",
	"/read;x/../admin",
	"/read/;x/../admin",
	"/read/..%3B/admin",
	"/read/%252e%252e/admin",
	`/read/..\admin`,
	"/read/..%5cadmin",
	"/read/x%00/../../admin",
	"/read/../read/../admin",
	"//read/../admin",
	"/./read/../admin",
	"/read/.../admin",
	"/read/%",
	"/read/%zz/../../admin",
}

func init() {
	for _, p := range pathAttacks {
		conditionCases = append(conditionCases, conditionCase{
			name: "attack " + p, conds: map[string]string{"path": "/read"}, path: p,
		})
	}
}

// TestMacaroonConditions: the conditions of an attenuated macaroon are
// enforced where the sidecar understands them and fail closed otherwise, and
// every transport judges them the same: the gRPC check, HTTP mode with the
// nginx (X-Original-*) and Caddy/Traefik (X-Forwarded-*) headers, and HTTP
// mode with the request target itself (Envoy's http_service), over a real
// socket.
func TestMacaroonConditions(t *testing.T) {
	t.Parallel()
	// The credential "mc_v1_<i>" carries the conditions of case i.
	srv := mustServer(t, extauthz.AuthorizerFunc(func(_ context.Context, p credential.Presented) extauthz.Verdict {
		i, err := strconv.Atoi(strings.TrimPrefix(p.Credential, "mc_v1_"))
		if err != nil || i < 0 || i >= len(conditionCases) {
			return extauthz.Verdict{Err: credential.ErrNotFound}
		}
		return extauthz.Verdict{Result: credential.Result{Type: credential.TypeMacaroon, KeyID: "k1", Conditions: conditionCases[i].conds}}
	}), extauthz.Options{})
	h := srv.HTTPHandler()
	ts := newTestHTTP(t, srv)
	for i, tt := range conditionCases {
		key := "mc_v1_" + strconv.Itoa(i)
		method, host := tt.method, tt.host
		if method == "" {
			method = "GET"
		}
		if host == "" {
			host = "api.example.com"
		}
		t.Run(tt.name, func(t *testing.T) {
			check := func(transport string, status int) {
				t.Helper()
				if got := status == http.StatusOK; got != tt.allow {
					t.Errorf("%s: status %d, want allowed = %v", transport, status, tt.allow)
				} else if !tt.allow && status != http.StatusForbidden && transport != "http target" {
					t.Errorf("%s: deny status %d, want 403", transport, status)
				}
			}

			resp, err := srv.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: method, Host: host, Path: tt.path, Headers: map[string]string{"x-api-key": key},
				}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			st := http.StatusOK
			if d := resp.GetDeniedResponse(); d != nil {
				st = int(d.GetStatus().GetCode())
			}
			check("grpc", st)

			for _, hs := range []struct {
				transport          string
				method, uri, hostH string
			}{
				{"http x-original", "X-Original-Method", "X-Original-Uri", ""},
				{"http x-forwarded", "X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host"},
			} {
				r := httptest.NewRequest(http.MethodGet, "http://sidecar/ext_authz", nil)
				r.Header = http.Header{"X-Api-Key": {key}, hs.method: {method}, hs.uri: {tt.path}}
				if hs.hostH != "" {
					r.Header[hs.hostH] = []string{host}
				} else {
					r.Host = host
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				check(hs.transport, w.Code)
			}

			if ascii(method) && ascii(host) && !strings.ContainsAny(tt.path, " \x00") {
				check("http target", rawRequest(t, ts.Listener.Addr().String(), method, tt.path, host, key))
			}
		})
	}
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// rawRequest sends the request target exactly as given, which Go's client
// would re-encode, and returns the status.
func rawRequest(t *testing.T, addr, method, target, host, key string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(method + " " + target + " HTTP/1.1\r\nHost: " + host +
		"\r\nX-Api-Key: " + key + "\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
