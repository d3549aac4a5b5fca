package extauthz_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

// FuzzClientIP checks the trusted forwarded headers by their properties:
// the rightmost entry of the last value decides; nothing to its left (which
// the client writes) ever changes the answer; repeated headers, Envoy's
// merged form and the HTTP transport agree; an unusable header falls through
// to the next, then to the peer; and the address is never IPv4-mapped.
func FuzzClientIP(f *testing.F) {
	f.Add("203.0.113.7", "198.51.100.1", "", "evil", "192.0.2.10")
	f.Add("", "10.0.0.1, 203.0.113.9", "2001:db8::1", "1.2.3.4", "192.0.2.10")
	f.Add("a,b", "unknown", "[::ffff:198.51.100.3]:443", "", "::1")
	f.Add("", " 192.0.2.5:80 ,", "nope", "10.0.0.0/8", "fe80::1%eth0")
	f.Add("x", "::ffff:10.1.2.3", "", "", "not an address")
	opts := &extauthz.Options{ClientIPHeaders: []string{"x-forwarded-for", "x-real-ip"}}
	f.Fuzz(func(t *testing.T, xff1, xff2, realIP, junk, peer string) {
		if _, err := netip.ParseAddr(peer); err != nil {
			peer = "192.0.2.10"
		}
		grpcRaw := func(xff1, xff2 string) netip.Addr {
			kv := []string{"x-forwarded-for", xff1, "x-forwarded-for", xff2}
			if realIP != "" {
				kv = append(kv, "x-real-ip", realIP)
			}
			r := rawCheckRequest(kv...)
			r.Attributes.Source.Address.GetSocketAddress().Address = peer
			return extauthz.FromCheckRequest(r, opts).ClientIP
		}
		grpcMerged := func(xff1, xff2 string) netip.Addr {
			h := map[string]string{"x-forwarded-for": xff1 + "," + xff2}
			if realIP != "" {
				h["x-real-ip"] = realIP
			}
			r := checkRequest(h, nil)
			r.Attributes.Source.Address.GetSocketAddress().Address = peer
			return extauthz.FromCheckRequest(r, opts).ClientIP
		}
		viaHTTP := func(xff1, xff2 string) netip.Addr {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = net.JoinHostPort(peer, "40000")
			r.Header = http.Header{"X-Forwarded-For": {xff1, xff2}}
			if realIP != "" {
				r.Header["X-Real-Ip"] = []string{realIP}
			}
			return extauthz.FromHTTP(r, opts).ClientIP
		}

		got := grpcRaw(xff1, xff2)
		if m, h := grpcMerged(xff1, xff2), viaHTTP(xff1, xff2); m != got || h != got {
			t.Fatalf("transports disagree: header_map %v, merged %v, http %v", got, m, h)
		}
		// The model: the rightmost entry of the last value, else the next
		// header, else the peer.
		want := rightmost(xff2)
		if !want.IsValid() && realIP != "" {
			want = rightmost(realIP)
		}
		if !want.IsValid() {
			want = netip.MustParseAddr(peer).Unmap()
		}
		if got != want {
			t.Fatalf("client IP %v, want %v", got, want)
		}
		if got.Is4In6() {
			t.Fatalf("IPv4-mapped client IP %v", got)
		}
		// What the client writes left of the last comma, or in an earlier
		// header, never matters.
		for _, alt := range [][2]string{{junk + "," + xff1, xff2}, {junk, junk + "," + xff2}, {"", xff2}} {
			if a := viaHTTP(alt[0], alt[1]); a != got {
				t.Fatalf("client-written entries %q changed the client IP from %v to %v", alt, got, a)
			}
			if a := grpcRaw(alt[0], alt[1]); a != got {
				t.Fatalf("client-written entries %q changed the gRPC client IP from %v to %v", alt, got, a)
			}
		}
	})
}

// rightmost parses the last comma-separated entry of v as an address, with
// or without a port; the zero Addr when it does not parse.
func rightmost(v string) netip.Addr {
	parts := strings.Split(v, ",")
	e := strings.Trim(parts[len(parts)-1], " \t")
	if a, err := netip.ParseAddr(e); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(e); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
