package xds_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/talos-project/talos/controlplane/xds"
	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
)

// waitFor bounds every wait of these tests. Nothing waits this long unless
// something is broken.
const waitFor = 10 * time.Second

// newTestServer starts s on a real gRPC server on 127.0.0.1:0 and returns a
// client connection to it.
func newTestServer(t *testing.T, s *xds.Server) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func mustNew(t *testing.T, o xds.Options) *xds.Server {
	t.Helper()
	s, err := xds.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runServer runs s.Run until the test ends and checks that it returns nil.
func runServer(t *testing.T, s *xds.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func mustConsistent(t *testing.T, s *xds.Server) {
	t.Helper()
	if err := s.CheckConsistency(); err != nil {
		t.Fatal(err)
	}
}

// update is one decoded, validated DeltaDiscoveryResponse.
type update struct {
	nonce    string
	invs     map[string]*sidecarv1.Invalidation
	versions map[string]string
	removed  []string
}

// heartbeat returns the update's heartbeat, or nil.
func (u update) heartbeat() *sidecarv1.Invalidation { return u.invs[xds.HeartbeatName] }

// keys returns the update's invalidations without the heartbeat.
func (u update) keys() map[string]*sidecarv1.Invalidation {
	out := make(map[string]*sidecarv1.Invalidation, len(u.invs))
	for name, inv := range u.invs {
		if name != xds.HeartbeatName {
			out[name] = inv
		}
	}
	return out
}

// state is what a client knows after applying every update it received.
type state struct {
	versions map[string]string
	invs     map[string]*sidecarv1.Invalidation
}

func (s *state) apply(u update) {
	if s.versions == nil {
		s.versions = map[string]string{}
		s.invs = map[string]*sidecarv1.Invalidation{}
	}
	for name, inv := range u.invs {
		s.invs[name] = inv
		s.versions[name] = u.versions[name]
	}
	for _, name := range u.removed {
		delete(s.invs, name)
		delete(s.versions, name)
	}
}

// initialVersions is what a reconnecting client sends: every version it
// holds except the heartbeat's.
func (s *state) initialVersions() map[string]string {
	out := map[string]string{}
	for name, v := range s.versions {
		if name != xds.HeartbeatName {
			out[name] = v
		}
	}
	return out
}

// deltaClient is a raw delta ADS client, the way a sidecar speaks the
// protocol: one wildcard subscription to xds.InvalidationType.
type deltaClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc
	resps  chan *discovery.DeltaDiscoveryResponse
	err    chan error // Recv's final error
	state  state
}

// connect opens a delta stream and sends the subscribing request.
func connect(t *testing.T, conn *grpc.ClientConn, node string, subscribe []string, initial map[string]string) *deltaClient {
	t.Helper()
	c := openDelta(t, conn)
	// The client holds what it claims to hold.
	maps.Copy(c.state.versions, initial)
	c.send(&discovery.DeltaDiscoveryRequest{
		Node:                    &core.Node{Id: node},
		TypeUrl:                 xds.InvalidationType,
		ResourceNamesSubscribe:  subscribe,
		InitialResourceVersions: initial,
	})
	return c
}

// openDelta opens a delta stream and sends nothing, for a client that
// subscribes to more than xds.InvalidationType (an Envoy).
func openDelta(t *testing.T, conn *grpc.ClientConn) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{
		t:      t,
		stream: stream,
		cancel: cancel,
		resps:  make(chan *discovery.DeltaDiscoveryResponse),
		err:    make(chan error, 1),
	}
	c.state.apply(update{})
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				c.err <- err
				return
			}
			select {
			case c.resps <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return c
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv returns the next response, validated, and applies it to c.state. It
// does not acknowledge it.
func (c *deltaClient) recv() update {
	c.t.Helper()
	u := decode(c.t, c.next())
	c.state.apply(u)
	return u
}

// next returns the next response as it came, of any type.
func (c *deltaClient) next() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		return r
	case err := <-c.err:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(waitFor):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *deltaClient) ack(u update) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: xds.InvalidationType, ResponseNonce: u.nonce})
}

func (c *deltaClient) nack(u update, msg string) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{
		TypeUrl:       xds.InvalidationType,
		ResponseNonce: u.nonce,
		ErrorDetail:   &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg},
	})
}

// until receives and acknowledges responses until cond holds for the
// client's state, and returns how many responses that took.
func (c *deltaClient) until(cond func(u update, st *state) bool) int {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for n := 1; ; n++ {
		if time.Now().After(deadline) {
			c.t.Fatal("condition not reached before the deadline")
		}
		u := c.recv()
		c.ack(u)
		if cond(u, &c.state) {
			return n
		}
	}
}

// close ends the stream from the client side and waits until it is gone.
func (c *deltaClient) close() {
	c.t.Helper()
	c.cancel()
	select {
	case <-c.err:
	case <-time.After(waitFor):
		c.t.Fatal("stream did not end")
	}
}

var eventTypes = map[string]bool{"revoked": true, "rotated": true, "updated": true, "deleted": true}

// decode checks a response and every resource in it against the protocol.
func decode(t *testing.T, r *discovery.DeltaDiscoveryResponse) update {
	t.Helper()
	if r.GetTypeUrl() != xds.InvalidationType {
		t.Fatalf("response type URL %q, want %q", r.GetTypeUrl(), xds.InvalidationType)
	}
	if r.GetNonce() == "" {
		t.Fatal("response without a nonce")
	}
	u := update{
		nonce:    r.GetNonce(),
		invs:     map[string]*sidecarv1.Invalidation{},
		versions: map[string]string{},
		removed:  r.GetRemovedResources(),
	}
	for _, res := range r.GetResources() {
		name := res.GetName()
		if _, dup := u.invs[name]; dup {
			t.Fatalf("resource %q twice in one response", name)
		}
		if got := res.GetResource().GetTypeUrl(); got != xds.InvalidationType {
			t.Fatalf("resource %q: type URL %q", name, got)
		}
		if res.GetVersion() == "" {
			t.Fatalf("resource %q without a version", name)
		}
		inv := new(sidecarv1.Invalidation)
		if err := res.GetResource().UnmarshalTo(inv); err != nil {
			t.Fatalf("resource %q: %v", name, err)
		}
		if err := inv.GetTime().CheckValid(); err != nil {
			t.Fatalf("resource %q: time: %v", name, err)
		}
		if name == xds.HeartbeatName {
			if inv.GetTenant() != "" || inv.GetKeyId() != "" || inv.GetType() != "" || inv.GetSeq() < 0 {
				t.Fatalf("heartbeat %v: want only seq and time", inv)
			}
		} else {
			if inv.GetKeyId() == "" || name != inv.GetTenant()+"/"+inv.GetKeyId() {
				t.Fatalf("resource %q holds tenant %q key %q", name, inv.GetTenant(), inv.GetKeyId())
			}
			if !eventTypes[inv.GetType()] {
				t.Fatalf("resource %q: type %q", name, inv.GetType())
			}
			if inv.GetSeq() <= 0 {
				t.Fatalf("resource %q: seq %d", name, inv.GetSeq())
			}
		}
		u.invs[name] = inv
		u.versions[name] = res.GetVersion()
	}
	for _, name := range u.removed {
		// The heartbeat is removed only while Options.Live reports false
		// (live_test.go).
		if _, both := u.invs[name]; both {
			t.Fatalf("resource %q both updated and removed", name)
		}
	}
	return u
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

func event(seq int64, tenant, key string, typ credential.EventType) credential.Event {
	return credential.Event{
		Seq:    seq,
		Tenant: credential.Tenant(tenant),
		Kind:   credential.KindIssued,
		KeyID:  credential.KeyID(key),
		Type:   typ,
		Time:   base.Add(time.Duration(seq) * time.Second),
	}
}

// fakeClock is an Options.Now the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lockedBuffer collects log output written from the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// metric returns the value of the named counter or gauge in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// poll waits until cond holds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// isEnd reports whether err is how a stream ends when its server goes away
// or the client cancels.
func isEnd(err error) bool {
	return err != nil && (errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "EOF"))
}
