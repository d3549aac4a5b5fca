package controlplane_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/talos-project/talos/controlplane"
	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/controlplane/httpapi"
	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apikey"
)

const adminToken = "admin-token-that-is-long-enough-0123456789"

func deps(t *testing.T) controlplane.Deps {
	t.Helper()
	st, err := sqlite.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "t.db"), sqlite.Options{AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secrets, err := apikey.NewSecretSet([]byte("controlplane-test-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := keys.New(keys.Options{Issuer: "http://t", Prefix: "talos"}, keys.Deps{Store: st, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	return controlplane.Deps{Keys: svc, API: grpcapi.New(grpcapi.Deps{Keys: svc})}
}

// start runs a control plane on loopback ephemeral ports and returns a gRPC
// connection to it.
func start(t *testing.T, cfg controlplane.Config, d controlplane.Deps) *grpc.ClientConn {
	t.Helper()
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	srv, err := controlplane.New(t.Context(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestGRPC_TokenCheckedBeforeTheMessageIsRead: without a token, a request
// larger than the receive limit is refused as unauthenticated, not as too
// large: the token is checked (in the tap handle) before the server reads,
// and buffers, the message.
func TestGRPC_TokenCheckedBeforeTheMessageIsRead(t *testing.T) {
	t.Parallel()
	auth := grpcapi.NewTokenAuth([]string{adminToken}, nil)
	conn := start(t, controlplane.Config{HTTP: httpapi.Options{Auth: auth, MaxBodyBytes: 1 << 20}}, deps(t))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	big := &sidecarpb.VerifyRequest{Credential: strings.Repeat("x", 2<<20)}
	_, err := sidecarpb.NewVerifierClient(conn).Verify(ctx, big, grpc.MaxCallSendMsgSize(4<<20))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("oversized Verify without a token: %v, want Unauthenticated (before the message is read)", err)
	}
	// With the token the same message is read, and refused as too large.
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
	_, err = sidecarpb.NewVerifierClient(conn).Verify(actx, big, grpc.MaxCallSendMsgSize(4<<20))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized Verify with the token: %v, want ResourceExhausted", err)
	}
	// A method outside the auth table is refused, token or not.
	err = conn.Invoke(actx, "/talos.v2alpha1.ApiKeys/AdminNotAMethod", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v, want Unimplemented", err)
	}
	// The admin service answers the token.
	if _, err := pb.NewApiKeysClient(conn).AdminListIssuedApiKeys(actx, &pb.ListIssuedApiKeysRequest{}); err != nil {
		t.Fatalf("admin call with the token: %v", err)
	}
}

// TestNew_RefusesAMethodMissingFromTheAuthTable: a service registered on the
// gRPC listener without a surface stops the start.
func TestNew_RefusesAMethodMissingFromTheAuthTable(t *testing.T) {
	t.Parallel()
	d := deps(t)
	d.GRPC = []func(*grpc.Server){func(g *grpc.Server) {
		g.RegisterService(&grpc.ServiceDesc{
			ServiceName: "talos.test.Unlisted",
			HandlerType: (*any)(nil),
			Methods:     []grpc.MethodDesc{{MethodName: "Leak", Handler: nil}},
		}, struct{}{})
	}}
	_, err := controlplane.New(t.Context(), controlplane.Config{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0"}, d)
	if err == nil || !strings.Contains(err.Error(), "/talos.test.Unlisted/Leak") {
		t.Fatalf("New = %v, want a refusal naming the method", err)
	}
}
