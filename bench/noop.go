package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/sync/errgroup"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
)

// The hidden subcommand that runs the no-op baseline, and the variable that
// tells a test binary to play that role instead of running tests (see
// TestMain).
const (
	childNoop    = "noop-extauthz"
	childRoleEnv = "BENCH_CHILD_ROLE"
)

// noopAuthz answers every Check with OK at once: the physical floor of an
// ext_authz hop (a gRPC round trip with the request decoded), with nothing
// decided.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

// okResponse is shared by every call; gRPC only reads it.
var okResponse = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

// runNoop serves the no-op ext_authz gRPC server and a no-op HTTP handler
// (200 to everything) until ctx ends, as its own process so that it crosses
// the same process boundary as the sidecar. It logs its addresses with the
// sidecar's messages.
func runNoop(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(childNoop, flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("grpc", "127.0.0.1:0", "ext_authz gRPC listen address")
	httpAddr := fs.String("http", "127.0.0.1:0", "HTTP listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	var lc net.ListenConfig
	gl, err := lc.Listen(ctx, "tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := lc.Listen(ctx, "tcp", *httpAddr)
	if err != nil {
		gl.Close()
		return err
	}
	// The sidecar's server options, so that only the work differs.
	gs := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4<<20),
	)
	authv3.RegisterAuthorizationServer(gs, noopAuthz{})
	hs := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second,
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		log.Info(msgExtAuthz, slog.String("addr", gl.Addr().String()))
		if err := gs.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		log.Info(msgProxyHTTP, slog.String("addr", hl.Addr().String()))
		if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		gs.Stop()
		return hs.Shutdown(sctx)
	})
	return g.Wait()
}
