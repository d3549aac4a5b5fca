package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// TestE2E_SidecarTokens: a sidecar token works for the sidecar protocol and
// the invalidation stream, never for the admin API; without a token the
// sidecar gets nothing.
func TestE2E_SidecarTokens(t *testing.T) {
	admin := "admin-token-that-is-long-enough-0123456789"
	side := "sidecar-token-that-is-long-enough-012345678"
	srv := startServer(t, "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS="+admin, "TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS="+side)

	// Issue a key with the admin token.
	c := sdk(srv.http)
	c.GetConfig().AddDefaultHeader("Authorization", "Bearer "+admin)
	secret, _ := issueKey(t, c, "read")

	// A sidecar with the sidecar token verifies and stays fresh.
	p := startProxy(t, srv.grpc, "TALOS_PROXY_UPSTREAM_TOKEN="+side)
	p.waitFresh(t)
	if r := p.check(t, secret); !allowed(r) {
		t.Fatalf("check with the sidecar token = %v", r)
	}

	// The sidecar token cannot drive the admin API, over gRPC or HTTP.
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+side), 10*time.Second)
	defer cancel()
	_, err = pb.NewApiKeysClient(conn).AdminListIssuedApiKeys(ctx, &pb.ListIssuedApiKeysRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("admin gRPC with the sidecar token: %v, want PermissionDenied", err)
	}
	hreq, _ := http.NewRequest("GET", srv.http+"/v2alpha1/admin/issuedApiKeys", nil)
	hreq.Header.Set("Authorization", "Bearer "+side)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin HTTP with the sidecar token = %d, want 403", resp.StatusCode)
	}

	// A sidecar without a token is refused: it fails closed.
	anon := startProxy(t, srv.grpc)
	if r := anon.check(t, secret); allowed(r) {
		t.Fatal("a sidecar without a token got an allow")
	}
	if anon.streamFresh(t) {
		t.Fatal("a sidecar without a token has a fresh invalidation stream")
	}
}
