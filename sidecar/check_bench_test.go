package sidecar_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
	"github.com/talos-project/talos/sidecar"
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

func benchRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Headers: map[string]string{
				"x-api-key": "imported-key-0123456789abcdef0123456789abcdef", "user-agent": "bench", ":authority": "app",
			},
		}},
	}}
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
	req := benchRequest()
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

type limitedKey struct{ oneKey }

func (u *limitedKey) Verify(ctx context.Context, p credential.Presented) (credential.Result, error) {
	r, err := u.oneKey.Verify(ctx, p)
	r.RatePolicy = &credential.RatePolicy{Quota: 1 << 40, Window: time.Hour}
	return r, err
}

// BenchmarkCheckL1HitRateLimited is BenchmarkCheckL1Hit for a key under a
// rate-limit policy, metered by the sidecar's memory limiter: the L1 hit
// plus one limiter decision and the client's rate-limit headers.
func BenchmarkCheckL1HitRateLimited(b *testing.B) {
	up := &limitedKey{}
	pl, err := pipeline.New(up, pipeline.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	lim, err := sidecar.NewRateLimiter(sidecar.RateLimitOptions{Backend: sidecar.RateLimitMemory, Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := extauthz.New(pl, extauthz.Options{RateLimiter: lim})
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest()
	ctx := context.Background()
	if _, err := srv.Check(ctx, req); err != nil {
		b.Fatal(err)
	}
	pl.Wait()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := srv.Check(ctx, req)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK || len(resp.GetOkResponse().GetResponseHeadersToAdd()) != 2 {
			b.Fatal(resp, err)
		}
	}
	if up.calls != 1 {
		b.Fatalf("upstream calls = %d, want 1", up.calls)
	}
}
