package extauthz_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// checkCredential asserts what every extracted credential satisfies.
func checkCredential(t *testing.T, r extauthz.Request) {
	t.Helper()
	if r.Credential != "" && r.Problem != nil {
		t.Fatalf("both a credential and a problem: %v", r.Problem)
	}
	if len(r.Credential) > credential.MaxCredentialBytes {
		t.Fatalf("credential of %d bytes", len(r.Credential))
	}
	for i := 0; i < len(r.Credential); i++ {
		if c := r.Credential[i]; c < 0x21 || c > 0x7e || c == ',' {
			t.Fatalf("credential byte %#x at %d", c, i)
		}
	}
	if (r.Credential != "" || r.Problem != nil) && r.CredentialHeader == "" {
		t.Fatal("credential without its header")
	}
}

func FuzzFromCheckRequest(f *testing.F) {
	f.Add("authorization", "Bearer good", "x-api-key", "revoked", "read write", "", "", false)
	f.Add("authorization", "Bearer good,Bearer good", "x-talos-scopes", "admin", "read", "t-1", "aud", true)
	f.Add("x-api-key", "limited", "x-forwarded-for", "203.0.113.1", "", "", "", false)
	f.Add("x-api-key", "a,b", "authorization", "Basic x", ",,", " ", ", ,", true)
	f.Add("authorization", "bearer\xff", "X-Talos-Key-Id", "\x00", "a\"b\\", "\xff", "\n", true)
	f.Add("x-api-key", "broken", "", "", "", "", "", false)
	s := mustServer(f, newFake(), extauthz.Options{
		RemoveCredential: true, ClientIPHeaders: []string{"x-forwarded-for"}, MetadataHeaders: []string{"plan", "evil"},
	})
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, scopes, tenant, audiences string, raw bool) {
		r := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}},
			ContextExtensions: map[string]string{
				"talos.scopes": scopes, "talos.tenant": tenant, "talos.audiences": audiences,
			},
		}}
		h := r.Attributes.Request.Http
		if raw {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: k1, RawValue: []byte(v1)}, {Key: k2, Value: v2},
			}}
		} else {
			h.Headers = map[string]string{k1: v1, k2: v2}
		}
		req := extauthz.FromCheckRequest(r, nil)
		checkCredential(t, req)

		resp, err := s.Check(t.Context(), r)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if resp.GetStatus() == nil {
			t.Fatal("response without a status")
		}
		// Whatever came in, the response must cross the wire.
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not marshal: %v", err)
		}
		switch {
		case resp.GetOkResponse() != nil:
			if resp.GetStatus().GetCode() != 0 {
				t.Fatalf("OK response with status %d", resp.GetStatus().GetCode())
			}
			for _, o := range resp.GetOkResponse().GetHeaders() {
				if v := o.GetHeader().GetValue(); strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(v) {
					t.Fatalf("unsafe header value %q", v)
				}
			}
		case resp.GetDeniedResponse() != nil:
			d := resp.GetDeniedResponse()
			if d.GetStatus().GetCode() < 400 || resp.GetStatus().GetCode() == 0 {
				t.Fatalf("deny with status %d, code %d", d.GetStatus().GetCode(), resp.GetStatus().GetCode())
			}
			if !json.Valid([]byte(d.GetBody())) {
				t.Fatalf("deny body is not JSON: %q", d.GetBody())
			}
			for _, o := range d.GetHeaders() {
				if v := o.GetHeader().GetValue(); strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("unsafe header value %q", v)
				}
			}
		default:
			t.Fatal("response without http_response")
		}
	})
}

func FuzzExtractCredential(f *testing.F) {
	f.Add("Bearer good", "", "")
	f.Add("Bearer good", "Bearer good", "k")
	f.Add("Basic Zm9v", "", "good")
	f.Add("bearer  a,bearer a", "", "")
	f.Add("Bearer "+strings.Repeat("a", credential.MaxCredentialBytes+1), "", "")
	f.Add("Bearer x\x7f", "", "y")
	s := mustServer(f, newFake(), extauthz.Options{})
	h := s.HTTPHandler()
	f.Fuzz(func(t *testing.T, auth1, auth2, key string) {
		r := httptest.NewRequest(http.MethodGet, "/check", nil)
		for _, v := range []string{auth1, auth2} {
			if v != "" {
				r.Header.Add("Authorization", v)
			}
		}
		if key != "" {
			r.Header.Set("X-Api-Key", key)
		}
		req := extauthz.FromHTTP(r, nil)
		checkCredential(t, req)

		// A single well-formed bearer token is always found as is.
		if auth2 == "" && strings.HasPrefix(auth1, "Bearer ") {
			tok := strings.TrimLeft(auth1[len("Bearer "):], " ")
			tok = strings.TrimRight(tok, " \t")
			if tok != "" && len(tok) <= credential.MaxCredentialBytes && printableNoComma(tok) && req.Credential != tok {
				t.Fatalf("credential %q, want %q", req.Credential, tok)
			}
		}

		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 400, 401, 403, 429, 503:
		default:
			t.Fatalf("status %d", w.Code)
		}
		if w.Code != 200 && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("deny body is not JSON: %q", w.Body.String())
		}
	})
}

func printableNoComma(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}
