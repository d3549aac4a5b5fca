package extauthz_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// TestMemo: allows rendered from a Memo equal fresh renders, while the
// per-request parts (anti-spoofing removals) stay per request.
func TestMemo(t *testing.T) {
	res := credential.Result{Type: credential.TypeIssued, Tenant: credential.DefaultTenant, KeyID: "k1", ActorID: "a1", Scopes: []string{"read", "write"},
		Metadata: []byte(`{"team":"core"}`)}
	memo := &extauthz.Memo{}
	withMemo, err := extauthz.New(extauthz.AuthorizerFunc(func(context.Context, credential.Presented) extauthz.Verdict {
		return extauthz.Verdict{Result: res, Memo: memo}
	}), extauthz.Options{MetadataHeaders: []string{"team"}})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := extauthz.New(extauthz.AuthorizerFunc(func(context.Context, credential.Presented) extauthz.Verdict {
		return extauthz.Verdict{Result: res}
	}), extauthz.Options{MetadataHeaders: []string{"team"}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(s *extauthz.Server, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: headers}},
		}})
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("Check = %v, %v", resp, err)
		}
		return resp
	}
	plain := map[string]string{"x-api-key": "key"}
	spoof := map[string]string{"x-api-key": "key", "x-talos-admin": "yes"}
	for i, h := range []map[string]string{plain, spoof, plain, spoof} {
		got, want := check(withMemo, h), check(fresh, h)
		if !proto.Equal(got, want) {
			t.Fatalf("check %d with the memo:\n%v\nwant\n%v", i, got, want)
		}
	}
	// A Memo filled by another Server is not used by this one.
	other, _ := extauthz.New(extauthz.AuthorizerFunc(func(context.Context, credential.Presented) extauthz.Verdict {
		return extauthz.Verdict{Result: res, Memo: memo}
	}), extauthz.Options{HeaderPrefix: "x-auth-"})
	if got := check(other, plain); len(got.GetOkResponse().GetHeaders()) == 0 || got.GetOkResponse().GetHeaders()[0].GetHeader().GetKey() != "x-auth-key-id" {
		t.Fatalf("another server's parts were used: %v", got)
	}
}
