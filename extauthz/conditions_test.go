package extauthz_test

import (
	"context"
	"net/http"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// TestMacaroonConditions: the conditions of an attenuated macaroon are
// enforced where the sidecar understands them and fail closed otherwise.
func TestMacaroonConditions(t *testing.T) {
	tests := []struct {
		name   string
		conds  map[string]string
		method string
		path   string
		allow  bool
	}{
		{"method holds", map[string]string{"method": "GET"}, "get", "/orders", true},
		{"method differs", map[string]string{"method": "GET"}, "POST", "/orders", false},
		{"path prefix holds", map[string]string{"path": "/orders"}, "GET", "/orders/42?x=1", true},
		{"path exact", map[string]string{"path": "/orders"}, "GET", "/orders", true},
		{"path not on a segment boundary", map[string]string{"path": "/orders"}, "GET", "/orders-admin", false},
		{"path outside", map[string]string{"path": "/orders"}, "GET", "/admin", false},
		{"unknown condition fails closed", map[string]string{"department": "sales"}, "GET", "/orders", false},
		{"all must hold", map[string]string{"method": "GET", "path": "/orders"}, "GET", "/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := extauthz.New(extauthz.AuthorizerFunc(func(context.Context, credential.Presented) extauthz.Verdict {
				return extauthz.Verdict{Result: credential.Result{Type: credential.TypeMacaroon, KeyID: "k1", Conditions: tt.conds}}
			}), extauthz.Options{})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: tt.method, Path: tt.path, Headers: map[string]string{"x-api-key": "mc_v1_token"},
				}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetOkResponse() != nil; got != tt.allow {
				t.Fatalf("allowed = %v, want %v (%v)", got, tt.allow, resp)
			}
			if !tt.allow && resp.GetDeniedResponse().GetStatus().GetCode() != http.StatusForbidden {
				t.Fatalf("deny status = %v, want 403", resp.GetDeniedResponse().GetStatus())
			}
		})
	}
}
