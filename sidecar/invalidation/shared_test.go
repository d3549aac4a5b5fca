package invalidation_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/sidecar/invalidation"
)

// tokenCreds sends a bearer token on every call of a connection, as
// sidecar/upstream's connection does.
type tokenCreds string

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(c)}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return false }

// sharedConn is a connection to f that carries token, the way the sidecar's
// upstream connection does, closed when the test ends.
func sharedConn(t *testing.T, f *fakeADS, token string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(tokenCreds(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestClient_SharedConn: on a shared connection the stream carries the
// connection's token; Close stops the client and leaves the connection
// open for its owner, and a second client can stream on it.
func TestClient_SharedConn(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	cc := sharedConn(t, f, "s3cret")
	c, err := invalidation.New(&fakeApplier{}, invalidation.Options{Conn: cc, NodeID: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context()) }()
	fs := f.waitSynced(t)
	if got := fs.md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("authorization metadata on the shared connection = %q, want one bearer token", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Run after Close = %v, want ErrUnavailable", err)
	}
	if err := c.Close(); err == nil {
		t.Error("a second Close succeeded")
	}
	if s := cc.GetState(); s == connectivity.Shutdown {
		t.Fatal("closing the client closed the shared connection")
	}

	again := newTestClient(t, f, &fakeApplier{}, invalidation.Options{Conn: cc})
	run(t, again)
	f.waitSynced(t)
	waitFor(t, "the second client to be fresh", again.Fresh)
}

// TestClient_SharedConnClosed: when the owner closes the shared connection,
// Run ends with ErrUnavailable, as on Close.
func TestClient_SharedConnClosed(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	cc := sharedConn(t, f, "s3cret")
	c := newTestClient(t, f, &fakeApplier{}, invalidation.Options{Conn: cc})
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context()) }()
	f.waitSynced(t)
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Run after the shared connection closed = %v, want ErrUnavailable", err)
	}
}

// TestClient_SharedConnLargeResponse: the first response after a long
// outage can exceed gRPC's default 4 MiB message bound; the client's own
// bound holds on a shared connection, which the client did not dial.
func TestClient_SharedConnLargeResponse(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	// About 6 MiB of invalidations, stored before the stream opens so
	// that they all come in its first response.
	const n = 25000
	for i := range n {
		f.publish(key("t", "key-"+strconv.Itoa(i)+"-padding-padding-padding-padding-padding-padding-padding-padding-padding", int64(i+1)))
	}
	a := &fakeApplier{}
	c := newTestClient(t, f, a, invalidation.Options{Conn: sharedConn(t, f, "s3cret")})
	run(t, c)
	f.waitSynced(t)
	if got := c.State().Watermark; got != n {
		t.Fatalf("watermark after the first response = %d, want %d", got, n)
	}
}
