package invalidation_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/sidecar/invalidation"
)

// fakeADS is a hand-written delta ADS server of Invalidation resources,
// enough of the protocol for the client: it answers a new stream with every
// held resource whose version differs from the client's
// initial_resource_versions (plus removals of the ones it no longer holds)
// and a fresh heartbeat, then sends what the test publishes. Each stream is
// handed to the test as a fakeStream carrying the client's requests.
type fakeADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr    string
	streams chan *fakeStream

	mu        sync.Mutex
	resources map[string]*discoveryv3.Resource // key resources by name
	watermark int64
	forgotten int64         // the heartbeat's forgotten seq
	counter   int           // versions and nonces
	current   *fakeStream   // the live stream, if any
	hold      chan struct{} // when set, new streams wait for it to close
}

// fakeStream is one stream as the server saw it.
type fakeStream struct {
	first        *discoveryv3.DeltaDiscoveryRequest
	md           metadata.MD
	initialNonce string
	reqs         chan *discoveryv3.DeltaDiscoveryRequest // requests after the first
	out          chan *discoveryv3.DeltaDiscoveryResponse
	end          chan error
}

func newFakeADS(t *testing.T) *fakeADS {
	t.Helper()
	f := &fakeADS{
		streams:   make(chan *fakeStream, 16),
		resources: map[string]*discoveryv3.Resource{},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	f.addr = l.Addr().String()
	return f
}

func (f *fakeADS) DeltaAggregatedResources(s grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	switch {
	case first.GetTypeUrl() != invalidation.TypeURL:
		return fmt.Errorf("fake: unexpected type %q", first.GetTypeUrl())
	case len(first.GetResourceNamesSubscribe()) > 1,
		len(first.GetResourceNamesSubscribe()) == 1 && first.GetResourceNamesSubscribe()[0] != "*":
		return fmt.Errorf("fake: want a wildcard subscription, got %q", first.GetResourceNamesSubscribe())
	}
	md, _ := metadata.FromIncomingContext(s.Context())
	fs := &fakeStream{
		first: first,
		md:    md,
		reqs:  make(chan *discoveryv3.DeltaDiscoveryRequest, 64),
		out:   make(chan *discoveryv3.DeltaDiscoveryResponse, 64),
		end:   make(chan error, 1),
	}
	f.mu.Lock()
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}

	// The initial answer and becoming the current stream happen under one
	// lock, so a publish lands either in the answer or after it.
	f.mu.Lock()
	resp := f.responseLocked(nil)
	held := first.GetInitialResourceVersions()
	for _, name := range slices.Sorted(maps.Keys(f.resources)) {
		if r := f.resources[name]; held[name] != r.GetVersion() {
			resp.Resources = append(resp.Resources, r)
		}
	}
	for name := range held {
		if _, ok := f.resources[name]; !ok {
			resp.RemovedResources = append(resp.RemovedResources, name)
		}
	}
	fs.initialNonce = resp.GetNonce()
	fs.out <- resp
	f.current = fs
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.current == fs {
			f.current = nil
		}
		f.mu.Unlock()
	}()
	f.streams <- fs

	go func() {
		for {
			req, err := s.Recv()
			if err != nil {
				return
			}
			fs.reqs <- req
		}
	}()
	for {
		select {
		case resp := <-fs.out:
			if err := s.Send(resp); err != nil {
				return err
			}
		case err := <-fs.end:
			return err
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

// responseLocked builds a response holding resources and a refreshed
// heartbeat, with a new nonce.
func (f *fakeADS) responseLocked(resources []*discoveryv3.Resource) *discoveryv3.DeltaDiscoveryResponse {
	f.counter++
	hb := mustResource(&sidecarv1.Invalidation{Seq: f.watermark, Forgotten: f.forgotten}, invalidation.HeartbeatName, "hb"+strconv.Itoa(f.counter))
	return &discoveryv3.DeltaDiscoveryResponse{
		TypeUrl:   invalidation.TypeURL,
		Nonce:     "n" + strconv.Itoa(f.counter),
		Resources: append(resources, hb),
	}
}

// sendLocked sends resp on the live stream and returns its nonce, or ""
// when no stream is live.
func (f *fakeADS) sendLocked(resp *discoveryv3.DeltaDiscoveryResponse) string {
	if f.current == nil {
		return ""
	}
	f.current.out <- resp
	return resp.GetNonce()
}

// publish stores invalidations (in one response with the heartbeat, which
// carries the new watermark) and sends them on the live stream, if any. It
// returns the response's nonce, or "" when no stream was live.
func (f *fakeADS) publish(invs ...*sidecarv1.Invalidation) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rs []*discoveryv3.Resource
	for _, inv := range invs {
		f.counter++
		name := inv.GetTenant() + "/" + inv.GetKeyId()
		r := mustResource(inv, name, "v"+strconv.Itoa(f.counter))
		f.resources[name] = r
		f.watermark = max(f.watermark, inv.GetSeq())
		rs = append(rs, r)
	}
	return f.sendLocked(f.responseLocked(rs))
}

// version returns the version of a stored resource.
func (f *fakeADS) version(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resources[name].GetVersion()
}

// remove drops resources and tells the live stream.
func (f *fakeADS) remove(names ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		delete(f.resources, n)
	}
	resp := f.responseLocked(nil)
	resp.RemovedResources = names
	return f.sendLocked(resp)
}

// sendRaw sends resources as they are, without a heartbeat and without
// storing them; removed names go in removed_resources.
func (f *fakeADS) sendRaw(rs []*discoveryv3.Resource, removed ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counter++
	return f.sendLocked(&discoveryv3.DeltaDiscoveryResponse{
		TypeUrl:          invalidation.TypeURL,
		Nonce:            "n" + strconv.Itoa(f.counter),
		Resources:        rs,
		RemovedResources: removed,
	})
}

// holdStreams makes new streams wait, unanswered, until the returned
// function is called.
func (f *fakeADS) holdStreams() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.hold = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.hold = nil
		f.mu.Unlock()
		close(ch)
	}
}

// nextStream waits for the next stream to be answered.
func (f *fakeADS) nextStream(t *testing.T) *fakeStream {
	t.Helper()
	select {
	case fs := <-f.streams:
		return fs
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a stream")
		return nil
	}
}

// waitSynced waits for the next stream and for the client's answer to its
// first response, and returns the stream.
func (f *fakeADS) waitSynced(t *testing.T) *fakeStream {
	t.Helper()
	fs := f.nextStream(t)
	fs.nextRequest(t)
	return fs
}

// noStream fails if a stream is waiting to be taken.
func (f *fakeADS) noStream(t *testing.T) {
	t.Helper()
	select {
	case <-f.streams:
		t.Fatal("got an unexpected new stream")
	default:
	}
}

// nextRequest waits for the client's next request on the stream.
func (fs *fakeStream) nextRequest(t *testing.T) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	select {
	case req := <-fs.reqs:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a request")
		return nil
	}
}

// close ends the stream with err (nil: the client sees EOF).
func (fs *fakeStream) close(err error) { fs.end <- err }

func mustResource(inv *sidecarv1.Invalidation, name, version string) *discoveryv3.Resource {
	a, err := anypb.New(inv)
	if err != nil {
		panic(err)
	}
	return &discoveryv3.Resource{Name: name, Version: version, Resource: a}
}

func key(tenant, id string, seq int64) *sidecarv1.Invalidation {
	return &sidecarv1.Invalidation{Tenant: tenant, KeyId: id, Seq: seq, Type: "revoked"}
}

// fakeApplier records the calls it gets, in order, as "inv <tenant>/<key>
// <seq>" and "adv <seq>".
type fakeApplier struct {
	mu    sync.Mutex
	calls []string
}

func (a *fakeApplier) Invalidate(tenant credential.Tenant, keyID credential.KeyID, seq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("inv %s/%s %d", tenant, keyID, seq))
}

func (a *fakeApplier) Forget(seq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("forget %d", seq))
}

func (a *fakeApplier) Advance(seq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("adv %d", seq))
}

func (a *fakeApplier) snapshot() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestClient builds a client of f feeding a, on a frozen fake clock
// unless o sets Now, and closes it when the test ends.
func newTestClient(t *testing.T, f *fakeADS, a invalidation.Applier, o invalidation.Options) *invalidation.Client {
	t.Helper()
	if o.Conn == nil {
		o.Addr = f.addr
	}
	if o.NodeID == "" {
		o.NodeID = "node-1"
	}
	if o.Now == nil {
		o.Now = newFakeClock().Now
	}
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = time.Millisecond, 10*time.Millisecond
	}
	c, err := invalidation.New(a, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// run runs c until the test ends; Run must then return nil and leave the
// client not fresh.
func run(t *testing.T, c *invalidation.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v, want nil", err)
		}
		if c.Fresh() {
			t.Error("Fresh after Run returned")
		}
	})
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// errStreamReset is what the fake ends a stream with to simulate a failure.
var errStreamReset = errors.New("fake: stream reset")
