package extauthz_test

import (
	"context"
	"testing"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// BenchmarkCheck measures Server.Check in process, the per-request cost the
// sidecar adds on top of its Authorizer: extraction, decision and response.
func BenchmarkCheck(b *testing.B) {
	allow := extauthz.AuthorizerFunc(func(context.Context, credential.Presented) extauthz.Verdict {
		return extauthz.Verdict{Result: goodResult, Cache: extauthz.CacheHit}
	})
	deny := extauthz.AuthorizerFunc(func(context.Context, credential.Presented) extauthz.Verdict {
		return extauthz.Verdict{Err: credential.ErrNotFound, Cache: extauthz.CacheHit}
	})
	// A typical request as Envoy sends it.
	headers := map[string]string{
		":authority": "api.example.com", ":method": "GET", ":path": "/v1/things", ":scheme": "https",
		"accept": "application/json", "user-agent": "curl/8.5.0", "x-request-id": "6f1c1c3e-7d0b-4d5e-9a55-9a6c5a8d2f10",
		"x-forwarded-proto": "https", "x-envoy-expected-rq-timeout-ms": "15000",
		"authorization": "Bearer talos_v2_5Jd8kq2Xw3mN7pR4tV6yZ9bC1eG3hK5",
	}
	ext := map[string]string{"talos.scopes": "read"}
	cases := []struct {
		name string
		a    extauthz.Authorizer
		hdrs map[string]string
	}{
		{"allow", allow, headers},
		{"deny_not_found", deny, headers},
		{"deny_missing", allow, map[string]string{"accept": "*/*"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := mustServer(b, c.a, extauthz.Options{RemoveCredential: true})
			req := checkRequest(c.hdrs, ext)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPathWithin measures the path condition of an attenuated
// macaroon on a plain path and on one with escapes.
func BenchmarkPathWithin(b *testing.B) {
	for _, p := range []string{"/read/orders/42?page=2", "/read/caf%C3%A9/%7Euser/42"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !extauthz.PathWithin(p, "/read") {
					b.Fatal("does not hold")
				}
			}
		})
	}
}
