package sidecar_test

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
	"github.com/talos-project/talos/sidecar/pipeline"
)

type oneKey struct{ calls int }

func (u *oneKey) Verify(_ context.Context, p credential.Presented) (credential.Result, error) {
	u.calls++
	return credential.Result{
		Type: credential.TypeIssued, Tenant: p.Tenant, KeyID: "k1", ActorID: "svc-orders",
		Scopes: []string{"read", "write"}, Status: credential.StateActive,
	}, nil
}

func (u *oneKey) JWKS(context.Context) ([]byte, error) { return nil, credential.ErrUnavailable }
func (u *oneKey) TokenPolicy(context.Context) (*token.Policy, error) {
	return nil, credential.ErrUnavailable
}

// BenchmarkCheckL1Hit is the whole ext_authz Check of the sidecar, in
// process, answered from the in-process cache: request parsing, credential
// extraction, cache key hash, L1 lookup, per-request checks and the allow
// response with its upstream headers.
func BenchmarkCheckL1Hit(b *testing.B) {
	up := &oneKey{}
	pl, err := pipeline.New(up, pipeline.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	srv, err := extauthz.New(pl, extauthz.Options{})
	if err != nil {
		b.Fatal(err)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Headers: map[string]string{
				"x-api-key": "imported-key-0123456789abcdef0123456789abcdef", "user-agent": "bench", ":authority": "app",
			},
		}},
	}}
	ctx := context.Background()
	if _, err := srv.Check(ctx, req); err != nil {
		b.Fatal(err)
	}
	pl.Wait()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := srv.Check(ctx, req)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatal(resp, err)
		}
	}
	if up.calls != 1 {
		b.Fatalf("upstream calls = %d, want 1", up.calls)
	}
}
