package extauthz_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

var cmpRequest = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.IgnoreFields(extauthz.Request{}, "Problem", "Cost"),
	cmpopts.EquateEmpty(),
}

func TestFromCheckRequest(t *testing.T) {
	t.Parallel()
	base := extauthz.Request{
		Method: "GET", Host: "api.example.com", Path: "/v1/things?x=1",
		ClientIP: netip.MustParseAddr("192.0.2.10"), Tenant: credential.DefaultTenant,
	}
	with := func(f func(r *extauthz.Request)) extauthz.Request {
		r := base
		f(&r)
		return r
	}
	xff := &extauthz.Options{ClientIPHeaders: []string{"x-forwarded-for", "x-real-ip"}}
	tests := []struct {
		name    string
		req     *authv3.CheckRequest
		opts    *extauthz.Options
		want    extauthz.Request
		problem bool
	}{
		{name: "nil", req: nil, want: extauthz.Request{Tenant: credential.DefaultTenant}},
		{name: "bearer", req: checkRequest(map[string]string{"authorization": "Bearer abc"}, nil),
			want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "abc", "authorization" })},
		{name: "trailing spaces trimmed", req: checkRequest(map[string]string{"x-api-key": " abc \t"}, nil),
			want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "abc", "x-api-key" })},
		{name: "custom header list", req: checkRequest(map[string]string{"x-api-key": "abc", "x-key": "def"}, nil),
			opts: &extauthz.Options{CredentialHeaders: []string{"x-key", "authorization"}},
			want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "def", "x-key" })},
		{name: "custom header list, two credentials", req: checkRequest(map[string]string{"authorization": "Bearer abc", "x-key": "def"}, nil),
			opts: &extauthz.Options{CredentialHeaders: []string{"x-key", "authorization"}}, problem: true,
			want: with(func(r *extauthz.Request) { r.CredentialHeader = "x-key" })},
		{name: "ambiguous", req: checkRequest(map[string]string{"x-api-key": "a,b"}, nil), problem: true,
			want: with(func(r *extauthz.Request) { r.CredentialHeader = "x-api-key" })},
		{name: "header map raw values", req: rawCheckRequest("Authorization", "Bearer abc", "authorization", "bearer abc"),
			want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "abc", "authorization" })},
		{name: "header map ambiguous", req: rawCheckRequest("x-api-key", "abc", "x-api-key", "abd"), problem: true,
			want: with(func(r *extauthz.Request) { r.CredentialHeader = "x-api-key" })},
		{name: "header map string values", req: func() *authv3.CheckRequest {
			r := checkRequest(nil, nil)
			r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-api-key", Value: "abc"}}}
			return r
		}(), want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "abc", "x-api-key" })},
		// An empty (non-nil) map is no headers: header_map is read.
		{name: "empty headers map", req: func() *authv3.CheckRequest {
			r := rawCheckRequest("x-api-key", "abc")
			r.Attributes.Request.Http.Headers = map[string]string{}
			return r
		}(), want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "abc", "x-api-key" })},
		{name: "headers win over header map", req: func() *authv3.CheckRequest {
			r := rawCheckRequest("x-api-key", "raw")
			r.Attributes.Request.Http.Headers = map[string]string{"x-api-key": "merged"}
			return r
		}(), want: with(func(r *extauthz.Request) { r.Credential, r.CredentialHeader = "merged", "x-api-key" })},
		{name: "context extensions", req: checkRequest(nil, map[string]string{
			"talos.scopes": " read,write  admin,, ", "talos.tenant": "t-1", "talos.audiences": "a.example.com b.example.com",
		}), want: with(func(r *extauthz.Request) {
			r.RequiredScopes = []string{"read", "write", "admin"}
			r.Tenant = "t-1"
			r.Audiences = []string{"a.example.com", "b.example.com"}
		})},
		{name: "blank tenant takes the default", req: checkRequest(nil, map[string]string{"talos.tenant": "  "}), want: base},
		{name: "options tenant", req: checkRequest(nil, nil), opts: &extauthz.Options{Tenant: "t-2"},
			want: with(func(r *extauthz.Request) { r.Tenant = "t-2" })},
		{name: "forwarded header ignored unless trusted", req: checkRequest(map[string]string{"x-forwarded-for": "203.0.113.7"}, nil), want: base},
		// The leftmost entry is the client's to forge; the rightmost is what
		// the nearest proxy saw.
		{name: "x-forwarded-for rightmost", req: checkRequest(map[string]string{"x-forwarded-for": "203.0.113.7, 10.0.0.1"}, nil), opts: xff,
			want: with(func(r *extauthz.Request) { r.ClientIP = netip.MustParseAddr("10.0.0.1") })},
		{name: "unparsable header tries the next", req: checkRequest(map[string]string{"x-forwarded-for": "unknown", "x-real-ip": "2001:db8::1"}, nil), opts: xff,
			want: with(func(r *extauthz.Request) { r.ClientIP = netip.MustParseAddr("2001:db8::1") })},
		{name: "nothing parses: source address", req: checkRequest(map[string]string{"x-forwarded-for": "unknown"}, nil), opts: xff, want: base},
		{name: "mapped address with port", req: checkRequest(map[string]string{"x-real-ip": "[::ffff:198.51.100.3]:443"}, nil), opts: xff,
			want: with(func(r *extauthz.Request) { r.ClientIP = netip.MustParseAddr("198.51.100.3") })},
		{name: "raw forwarded header", req: rawCheckRequest("X-Forwarded-For", "203.0.113.9"), opts: xff,
			want: with(func(r *extauthz.Request) { r.ClientIP = netip.MustParseAddr("203.0.113.9") })},
		{name: "no source", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{}}},
			want: extauthz.Request{Tenant: credential.DefaultTenant}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := extauthz.FromCheckRequest(tt.req, tt.opts)
			if diff := cmp.Diff(tt.want, got, cmpRequest...); diff != "" {
				t.Errorf("FromCheckRequest (-want +got):\n%s", diff)
			}
			if (got.Problem != nil) != tt.problem {
				t.Errorf("Problem = %v, want problem %v", got.Problem, tt.problem)
			}
			if got.Problem != nil && !errors.Is(got.Problem, credential.ErrMalformed) {
				t.Errorf("Problem %v does not wrap ErrMalformed", got.Problem)
			}
		})
	}
}

func TestFromHTTP(t *testing.T) {
	t.Parallel()
	newReq := func(method, target string, h map[string][]string) *http.Request {
		r := httptest.NewRequest(method, target, nil)
		r.RemoteAddr = "192.0.2.20:40000"
		for k, vs := range h {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		return r
	}
	peer := netip.MustParseAddr("192.0.2.20")
	tests := []struct {
		name    string
		req     *http.Request
		opts    *extauthz.Options
		want    extauthz.Request
		problem bool
	}{
		{name: "nil", req: nil, want: extauthz.Request{Tenant: credential.DefaultTenant}},
		{name: "envoy http_service appends the path", req: newReq("POST", "http://authz.local/api/v1/x?y=2", map[string][]string{"Authorization": {"Bearer abc"}}),
			want: extauthz.Request{Credential: "abc", CredentialHeader: "authorization", Method: "POST", Host: "authz.local", Path: "/api/v1/x?y=2", ClientIP: peer, Tenant: credential.DefaultTenant}},
		{name: "traefik forward-auth", req: newReq("GET", "http://authz.local/", map[string][]string{
			"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/orders/7"}, "X-Forwarded-Host": {"shop.example.com"}, "X-Api-Key": {"k"},
		}), want: extauthz.Request{Credential: "k", CredentialHeader: "x-api-key", Method: "DELETE", Host: "shop.example.com", Path: "/orders/7", ClientIP: peer, Tenant: credential.DefaultTenant}},
		{name: "nginx auth_request", req: newReq("GET", "http://authz.local/auth", map[string][]string{
			"X-Original-Method": {"PUT"}, "X-Original-Uri": {"/a?b=c"},
		}), want: extauthz.Request{Method: "PUT", Host: "authz.local", Path: "/a?b=c", ClientIP: peer, Tenant: credential.DefaultTenant}},
		{name: "route requirements", req: newReq("GET", "http://authz.local/", map[string][]string{
			"X-Talos-Scopes": {"read, write", "admin"}, "X-Talos-Tenant": {"t-9"}, "X-Talos-Audiences": {"aud1,aud2"},
		}), want: extauthz.Request{Method: "GET", Host: "authz.local", Path: "/", ClientIP: peer, Tenant: "t-9",
			RequiredScopes: []string{"read", "write", "admin"}, Audiences: []string{"aud1", "aud2"}}},
		{name: "repeated identical values", req: newReq("GET", "http://authz.local/", map[string][]string{"Authorization": {"Bearer abc", "Bearer abc"}}),
			want: extauthz.Request{Credential: "abc", CredentialHeader: "authorization", Method: "GET", Host: "authz.local", Path: "/", ClientIP: peer, Tenant: credential.DefaultTenant}},
		{name: "repeated different values", req: newReq("GET", "http://authz.local/", map[string][]string{"Authorization": {"Bearer abc", "Bearer abd"}}),
			problem: true, want: extauthz.Request{CredentialHeader: "authorization", Method: "GET", Host: "authz.local", Path: "/", ClientIP: peer, Tenant: credential.DefaultTenant}},
		{name: "forwarded for is not trusted by default", req: newReq("GET", "http://authz.local/", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}),
			want: extauthz.Request{Method: "GET", Host: "authz.local", Path: "/", ClientIP: peer, Tenant: credential.DefaultTenant}},
		{name: "trusted forwarded for", req: newReq("GET", "http://authz.local/", map[string][]string{"X-Forwarded-For": {"203.0.113.7, 192.0.2.1", "198.51.100.1"}}),
			opts: &extauthz.Options{ClientIPHeaders: []string{"x-forwarded-for"}},
			want: extauthz.Request{Method: "GET", Host: "authz.local", Path: "/", ClientIP: netip.MustParseAddr("198.51.100.1"), Tenant: credential.DefaultTenant}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := extauthz.FromHTTP(tt.req, tt.opts)
			if diff := cmp.Diff(tt.want, got, cmpRequest...); diff != "" {
				t.Errorf("FromHTTP (-want +got):\n%s", diff)
			}
			if (got.Problem != nil) != tt.problem {
				t.Errorf("Problem = %v, want problem %v", got.Problem, tt.problem)
			}
		})
	}
}

// TestExtract pins the credential rules shared by both transports by running
// each case through both.
func TestExtract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		auth    []string // authorization values
		key     []string // x-api-key values
		want    string
		header  string
		problem bool
	}{
		{name: "none"},
		{name: "bearer", auth: []string{"Bearer t1"}, want: "t1", header: "authorization"},
		{name: "BEARER", auth: []string{"BEARER t1"}, want: "t1", header: "authorization"},
		{name: "scheme without separator", auth: []string{"Bearert1"}},
		{name: "tab separator is another scheme", auth: []string{"Bearer\tt1"}},
		{name: "raw token in authorization is absent", auth: []string{"t1"}, key: []string{"k1"}, want: "k1", header: "x-api-key"},
		{name: "basic then bearer", auth: []string{"Basic Zm9vOmJhcg==", "Bearer t1"}, want: "t1", header: "authorization"},
		{name: "identical repeats", auth: []string{"Bearer t1", "bearer  t1"}, want: "t1", header: "authorization"},
		{name: "different repeats", auth: []string{"Bearer t1", "Bearer t2"}, header: "authorization", problem: true},
		{name: "merged different", key: []string{"k1,k2"}, header: "x-api-key", problem: true},
		{name: "merged identical with blanks", key: []string{"k1, ,k1,"}, want: "k1", header: "x-api-key"},
		{name: "empty key is absent", key: []string{""}},
		{name: "quote", key: []string{`k"1`}, want: `k"1`, header: "x-api-key"},
		{name: "DEL", key: []string{"k\x7f"}, header: "x-api-key", problem: true},
		{name: "problem stops the walk", auth: []string{"Bearer a b"}, key: []string{"k1"}, header: "authorization", problem: true},
		{name: "same credential in both headers", auth: []string{"Bearer k1"}, key: []string{"k1"}, want: "k1", header: "authorization"},
		{name: "different credentials in two headers", auth: []string{"Bearer t1"}, key: []string{"k1"}, header: "authorization", problem: true},
		{name: "second header merged different", auth: []string{"Bearer t1"}, key: []string{"t1,k1"}, header: "authorization", problem: true},
		{name: "other scheme and a key", auth: []string{"Basic Zm9v"}, key: []string{"k1"}, want: "k1", header: "x-api-key"},
		{name: "blank key beside a token", auth: []string{"Bearer t1"}, key: []string{" "}, want: "t1", header: "authorization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hr := httptest.NewRequest("GET", "/", nil)
			var kv []string
			for _, v := range tt.auth {
				hr.Header.Add("Authorization", v)
				kv = append(kv, "authorization", v)
			}
			for _, v := range tt.key {
				hr.Header.Add("X-Api-Key", v)
				kv = append(kv, "x-api-key", v)
			}
			for name, got := range map[string]extauthz.Request{
				"http":       extauthz.FromHTTP(hr, nil),
				"header_map": extauthz.FromCheckRequest(rawCheckRequest(kv...), nil),
			} {
				if got.Credential != tt.want || got.CredentialHeader != tt.header || (got.Problem != nil) != tt.problem {
					t.Errorf("%s: got (%q, %q, %v), want (%q, %q, problem %v)", name,
						got.Credential, got.CredentialHeader, got.Problem, tt.want, tt.header, tt.problem)
				}
			}
		})
	}
}
