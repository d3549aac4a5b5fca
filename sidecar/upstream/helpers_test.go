package upstream_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/sidecar/upstream"
)

// fakeVerifier is a sidecarpb.VerifierServer whose answers are functions.
// It counts the calls that reached it.
type fakeVerifier struct {
	sidecarpb.UnimplementedVerifierServer
	verify func(ctx context.Context, r *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error)
	batch  func(ctx context.Context, r *sidecarpb.BatchVerifyRequest) (*sidecarpb.BatchVerifyResponse, error)
	policy func(ctx context.Context) (*sidecarpb.TokenPolicy, error)
	calls  atomic.Int64
}

func (f *fakeVerifier) GetTokenPolicy(ctx context.Context, _ *sidecarpb.GetTokenPolicyRequest) (*sidecarpb.TokenPolicy, error) {
	f.calls.Add(1)
	return f.policy(ctx)
}

func (f *fakeVerifier) Verify(ctx context.Context, r *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
	f.calls.Add(1)
	return f.verify(ctx, r)
}

func (f *fakeVerifier) BatchVerify(ctx context.Context, r *sidecarpb.BatchVerifyRequest) (*sidecarpb.BatchVerifyResponse, error) {
	f.calls.Add(1)
	if f.batch != nil {
		return f.batch(ctx, r)
	}
	// By default, answer each request as Verify would.
	out := &sidecarpb.BatchVerifyResponse{}
	for _, req := range r.GetRequests() {
		resp, err := f.verify(ctx, req)
		if err != nil {
			return nil, err
		}
		out.Results = append(out.Results, resp)
	}
	return out, nil
}

// fakeDerivedKeys is a pb.DerivedKeysServer serving GetJwks.
type fakeDerivedKeys struct {
	pb.UnimplementedDerivedKeysServer
	jwks func(ctx context.Context) (*pb.GetJwksResponse, error)
}

func (f *fakeDerivedKeys) GetJwks(ctx context.Context, _ *pb.GetJwksRequest) (*pb.GetJwksResponse, error) {
	return f.jwks(ctx)
}

// testServer is a real gRPC server on 127.0.0.1:0.
type testServer struct {
	addr string
	srv  *grpc.Server
}

// newTestServer is a real gRPC server on 127.0.0.1:0 serving v and d, with
// opts (TLS credentials, say).
func newTestServer(t testing.TB, v *fakeVerifier, d *fakeDerivedKeys, opts ...grpc.ServerOption) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	if v != nil {
		sidecarpb.RegisterVerifierServer(srv, v)
	}
	if d != nil {
		pb.RegisterDerivedKeysServer(srv, d)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return &testServer{addr: l.Addr().String(), srv: srv}
}

// logBuffer collects log output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestClient returns a client for addr with fast retries and a debug
// logger whose output must never contain a test credential.
func newTestClient(t *testing.T, addr string, o upstream.Options) (*upstream.Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	o.Addr = addr
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.Backoff == 0 {
		o.Backoff = time.Millisecond
	}
	c, err := upstream.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		if out := logs.String(); strings.Contains(out, credPrefix) {
			t.Errorf("a credential reached the logs:\n%s", out)
		}
	})
	return c, logs
}

// credPrefix starts every test credential, so logs and errors can be
// searched for one.
const credPrefix = "tk_secret_"
