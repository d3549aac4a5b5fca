package invalidation_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/sidecar/invalidation"
)

// ack is the request that acknowledges the response with nonce.
func ack(nonce string) *discoveryv3.DeltaDiscoveryRequest {
	return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: invalidation.TypeURL, ResponseNonce: nonce}
}

func checkRequest(t *testing.T, got, want *discoveryv3.DeltaDiscoveryRequest) {
	t.Helper()
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("request (-want +got):\n%s", d)
	}
}

func checkCalls(t *testing.T, a *fakeApplier, want ...string) {
	t.Helper()
	if d := cmp.Diff(want, a.snapshot(), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("applier calls (-want +got):\n%s", d)
	}
}

func checkState(t *testing.T, c *invalidation.Client, want invalidation.State) {
	t.Helper()
	if d := cmp.Diff(want, c.State(), cmpopts.IgnoreFields(invalidation.State{}, "LastHeard")); d != "" {
		t.Errorf("State (-want +got):\n%s", d)
	}
}

func TestClient_Run_Syncs(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	f.publish(key("t1", "k1", 3), key("t1", "k2", 5))
	f.publish(key("t2", "k3", 7))
	a := &fakeApplier{}
	clock := newFakeClock()
	c := newTestClient(t, f, a, invalidation.Options{NodeID: "sidecar-a", Now: clock.Now})
	if c.Fresh() || c.Ready() {
		t.Error("Fresh before Run, want false")
	}
	run(t, c)

	fs := f.nextStream(t)
	checkRequest(t, fs.first, &discoveryv3.DeltaDiscoveryRequest{
		Node:    &corev3.Node{Id: "sidecar-a", Cluster: invalidation.NodeCluster},
		TypeUrl: invalidation.TypeURL,
	})
	checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
	// The ACK goes out after the response is applied.
	checkCalls(t, a, "inv t1/k1 3", "inv t1/k2 5", "inv t2/k3 7", "adv 7")
	checkState(t, c, invalidation.State{Connected: true, Synced: true, Watermark: 7, Applied: 3})
	if got := c.State().LastHeard; !got.Equal(clock.Now()) {
		t.Errorf("LastHeard = %v, want %v", got, clock.Now())
	}
	if !c.Fresh() || !c.Ready() {
		t.Error("Fresh after sync, want true")
	}
}

func TestClient_Run_AppliesBeforeAdvance(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	a := &fakeApplier{}
	c := newTestClient(t, f, a, invalidation.Options{})
	run(t, c)
	fs := f.nextStream(t)
	checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
	// An empty control plane: a heartbeat at seq 0, nothing to advance.
	checkCalls(t, a)

	nonce := f.publish(key("t", "a", 10), key("t", "b", 12), key("t", "c", 11))
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	checkCalls(t, a, "inv t/a 10", "inv t/b 12", "inv t/c 11", "adv 12")

	// A response whose highest seq is not above the watermark applies its
	// invalidations and leaves the watermark alone.
	nonce = f.publish(key("t", "a", 9))
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	checkCalls(t, a, "inv t/a 10", "inv t/b 12", "inv t/c 11", "adv 12", "inv t/a 9")
	checkState(t, c, invalidation.State{Connected: true, Synced: true, Watermark: 12, Applied: 4})
}

func TestClient_Run_NACKs(t *testing.T) {
	t.Parallel()
	other, err := anypb.New(&sidecarv1.VerifyRequest{Tenant: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]*discoveryv3.Resource{
		"garbage value":          {Name: "t/bad", Version: "x", Resource: &anypb.Any{TypeUrl: invalidation.TypeURL, Value: []byte{0xff, 0xff, 0xff}}},
		"another message":        {Name: "t/bad", Version: "x", Resource: other},
		"no value":               {Name: "t/bad", Version: "x"},
		"name without a slash":   mustResource(key("t", "bad", 4), "tbad", "x"),
		"empty tenant":           mustResource(key("", "bad", 4), "/bad", "x"),
		"name of another key":    mustResource(key("t", "other", 4), "t/bad", "x"),
		"heartbeat naming a key": mustResource(key("t", "bad", 4), invalidation.HeartbeatName, "x"),
		"negative seq":           mustResource(key("t", "bad", -1), "t/bad", "x"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeADS(t)
			a := &fakeApplier{}
			c := newTestClient(t, f, a, invalidation.Options{})
			run(t, c)
			fs := f.nextStream(t)
			checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))

			good := mustResource(key("t", "good", 4), "t/good", "v")
			nonce := f.sendRaw([]*discoveryv3.Resource{good, bad})
			nack := fs.nextRequest(t)
			if nack.GetResponseNonce() != nonce || nack.GetErrorDetail().GetCode() != int32(codes.InvalidArgument) || nack.GetErrorDetail().GetMessage() == "" {
				t.Fatalf("got %v, want a NACK of nonce %s with INVALID_ARGUMENT", nack, nonce)
			}
			checkCalls(t, a) // not even the good resource
			checkState(t, c, invalidation.State{Connected: true, NACKs: 1})

			// The stream stays. Later invalidations apply, but the watermark
			// stays held: the rejected ones may be below it.
			nonce = f.publish(key("t", "next", 6))
			checkRequest(t, fs.nextRequest(t), ack(nonce))
			checkCalls(t, a, "inv t/next 6")
			checkState(t, c, invalidation.State{Connected: true, Applied: 1, NACKs: 1})

			// Once every rejected resource is replaced or removed, the
			// watermark moves again.
			nonce = f.remove("t/good", bad.GetName())
			checkRequest(t, fs.nextRequest(t), ack(nonce))
			checkCalls(t, a, "inv t/next 6", "adv 6")
			checkState(t, c, invalidation.State{Connected: true, Synced: true, Watermark: 6, Applied: 1, NACKs: 1})
			f.noStream(t)
		})
	}
}

func TestClient_Run_Reconnects(t *testing.T) {
	t.Parallel()
	for name, endErr := range map[string]error{"EOF": nil, "error": errStreamReset} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeADS(t)
			f.publish(key("t", "k1", 1), key("t", "k2", 2), key("t", "k3", 3))
			a := &fakeApplier{}
			c := newTestClient(t, f, a, invalidation.Options{})
			var resyncs atomic.Int32
			c.OnResync(func() { resyncs.Add(1) })
			run(t, c)
			fs := f.nextStream(t)
			checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
			nonce := f.remove("t/k3") // forgotten, not un-invalidated
			checkRequest(t, fs.nextRequest(t), ack(nonce))
			nonce = f.publish(key("t", "k1", 4))
			checkRequest(t, fs.nextRequest(t), ack(nonce))

			release := f.holdStreams()
			fs.close(endErr)
			waitFor(t, "the client to see the stream end", func() bool { return !c.State().Connected })
			if nonce := f.publish(key("t", "k4", 5)); nonce != "" {
				t.Fatalf("published on a live stream %s, want none", nonce)
			}
			release()

			fs = f.nextStream(t)
			want := map[string]string{"t/k1": f.version("t/k1"), "t/k2": f.version("t/k2")}
			if d := cmp.Diff(want, fs.first.GetInitialResourceVersions()); d != "" {
				t.Errorf("initial_resource_versions (-want +got):\n%s", d)
			}
			checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
			// Only what the client missed is sent again.
			checkCalls(t, a, "inv t/k1 1", "inv t/k2 2", "inv t/k3 3", "adv 3", "inv t/k1 4", "adv 4", "inv t/k4 5", "adv 5")
			checkState(t, c, invalidation.State{Connected: true, Synced: true, Watermark: 5, Applied: 5, Reconnects: 1})
			// The clock never moved: the client stayed fresh throughout.
			if !c.Fresh() || resyncs.Load() != 0 {
				t.Errorf("Fresh = %v, resyncs = %d; want true, 0", c.Fresh(), resyncs.Load())
			}
		})
	}
}

func TestClient_Fresh(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	a := &fakeApplier{}
	clock := newFakeClock()
	c := newTestClient(t, f, a, invalidation.Options{MaxStaleness: 100 * time.Millisecond, Now: clock.Now})
	var resyncs atomic.Int32
	c.OnResync(func() {
		if c.Fresh() {
			t.Error("Fresh during OnResync, want false until the hook returns")
		}
		resyncs.Add(1)
	})

	release := f.holdStreams()
	run(t, c)
	if c.Fresh() {
		t.Error("Fresh before the first sync, want false")
	}
	release()
	fs := f.nextStream(t)
	checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
	if !c.Fresh() {
		t.Fatal("Fresh after sync = false, want true")
	}

	// Silence past the bound: Fresh turns false, the stream stays.
	clock.advance(101 * time.Millisecond)
	waitFor(t, "Fresh to turn false", func() bool { return !c.Fresh() })
	if c.Ready() || !c.State().Connected || resyncs.Load() != 0 {
		t.Errorf("Ready = %v, Connected = %v, resyncs = %d; want false, true, 0", c.Ready(), c.State().Connected, resyncs.Load())
	}
	// The server speaks again on the same stream: resync.
	nonce := f.publish()
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	if !c.Fresh() || resyncs.Load() != 1 {
		t.Errorf("after a heartbeat: Fresh = %v, resyncs = %d; want true, 1", c.Fresh(), resyncs.Load())
	}

	// Longer silence: the stream is presumed dead and replaced; the new one
	// stays unanswered for now.
	release = f.holdStreams()
	clock.advance(3*time.Second + time.Millisecond)
	waitFor(t, "Fresh to turn false", func() bool { return !c.Fresh() })
	waitFor(t, "the silent stream to be dropped", func() bool { return !c.State().Connected })
	release()
	fs = f.nextStream(t)
	checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
	if !c.Fresh() || resyncs.Load() != 2 {
		t.Errorf("after a new stream: Fresh = %v, resyncs = %d; want true, 2", c.Fresh(), resyncs.Load())
	}
	if got := c.State().Reconnects; got != 1 {
		t.Errorf("Reconnects = %d, want 1", got)
	}
}

// TestClient_Fresh_heldByNACK checks that heartbeats do not keep a client
// fresh while a rejected invalidation is outstanding, and that replacing it
// resyncs on the same stream.
func TestClient_Fresh_heldByNACK(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	clock := newFakeClock()
	c := newTestClient(t, f, &fakeApplier{}, invalidation.Options{MaxStaleness: 100 * time.Millisecond, Now: clock.Now})
	var resyncs atomic.Int32
	c.OnResync(func() { resyncs.Add(1) })
	run(t, c)
	fs := f.waitSynced(t)

	bad := &discoveryv3.Resource{Name: "t/bad", Version: "x", Resource: &anypb.Any{TypeUrl: invalidation.TypeURL, Value: []byte{0xff}}}
	f.sendRaw([]*discoveryv3.Resource{bad})
	if nack := fs.nextRequest(t); nack.GetErrorDetail() == nil {
		t.Fatalf("got %v, want a NACK", nack)
	}
	// The rejected response may have held a revocation: the caches stop
	// being trusted at once, not at the staleness bound.
	if c.Fresh() {
		t.Fatal("Fresh right after a NACK, want false")
	}
	// Heartbeats keep the stream alive (each arrives within MaxStaleness/2
	// of the last) but do not count as heard.
	for range 2 {
		clock.advance(40 * time.Millisecond)
		nonce := f.publish()
		checkRequest(t, fs.nextRequest(t), ack(nonce))
	}
	clock.advance(30 * time.Millisecond) // 110ms since the last sync
	waitFor(t, "Fresh to turn false", func() bool { return !c.Fresh() })

	nonce := f.publish(key("t", "bad", 1))
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	if !c.Fresh() || resyncs.Load() != 1 {
		t.Errorf("after the replacement: Fresh = %v, resyncs = %d; want true, 1", c.Fresh(), resyncs.Load())
	}
	checkState(t, c, invalidation.State{Connected: true, Synced: true, Watermark: 1, Applied: 1, NACKs: 1})
	f.noStream(t)
}

func TestClient_Run_Token(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		token string
		want  []string
	}{
		"set":   {token: "s3cret", want: []string{"Bearer s3cret"}},
		"unset": {},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeADS(t)
			c := newTestClient(t, f, &fakeApplier{}, invalidation.Options{Token: tc.token})
			run(t, c)
			fs := f.nextStream(t)
			if d := cmp.Diff(tc.want, fs.md.Get("authorization"), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("authorization metadata (-want +got):\n%s", d)
			}
		})
	}
}

func TestClient_Run_Misuse(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	c, err := invalidation.New(&fakeApplier{}, invalidation.Options{Addr: f.addr, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context()) }()
	f.waitSynced(t)
	if err := c.Run(t.Context()); !errors.Is(err, credential.ErrInvalidArgument) {
		t.Errorf("second Run = %v, want ErrInvalidArgument", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Run after Close = %v, want ErrUnavailable", err)
	}
	if err := c.Run(t.Context()); !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Run of a closed client = %v, want ErrUnavailable", err)
	}
	if c.Fresh() {
		t.Error("Fresh after Run returned")
	}
}

func TestNew_Invalid(t *testing.T) {
	t.Parallel()
	a := &fakeApplier{}
	shared, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	for name, tc := range map[string]struct {
		a invalidation.Applier
		o invalidation.Options
	}{
		"no applier":         {o: invalidation.Options{Addr: "127.0.0.1:1"}},
		"no address":         {a: a},
		"negative backoff":   {a: a, o: invalidation.Options{Addr: "127.0.0.1:1", MinBackoff: -1}},
		"negative staleness": {a: a, o: invalidation.Options{Addr: "127.0.0.1:1", MaxStaleness: -1}},
		"min above max":      {a: a, o: invalidation.Options{Addr: "127.0.0.1:1", MinBackoff: time.Second, MaxBackoff: time.Millisecond}},
		"min above default":  {a: a, o: invalidation.Options{Addr: "127.0.0.1:1", MinBackoff: time.Minute}},
		"conn and address":   {a: a, o: invalidation.Options{Conn: shared, Addr: "127.0.0.1:1"}},
		"conn and token":     {a: a, o: invalidation.Options{Conn: shared, Token: "t"}},
		"conn and dial opts": {a: a, o: invalidation.Options{Conn: shared, DialOptions: []grpc.DialOption{grpc.WithUserAgent("x")}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := invalidation.New(tc.a, tc.o)
			if !errors.Is(err, credential.ErrInvalidArgument) || c != nil {
				t.Errorf("New = %v, %v; want nil, ErrInvalidArgument", c, err)
			}
		})
	}
}

func TestClient_RegisterMetrics(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	f.publish(key("t", "k1", 3), key("t", "k2", 7))
	c := newTestClient(t, f, &fakeApplier{}, invalidation.Options{})
	reg := prometheus.NewPedanticRegistry()
	if err := c.RegisterMetrics(reg); err != nil {
		t.Fatalf("RegisterMetrics: %v", err)
	}
	if err := c.RegisterMetrics(reg); err == nil {
		t.Error("second RegisterMetrics = nil, want an error")
	}
	gather := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("Gather: %v", err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return got
	}
	if got := gather()["talos_proxy_invalidation_seconds_since_heard"]; got < 1e300 {
		t.Errorf("seconds_since_heard before the first sync = %v, want +Inf", got)
	}

	run(t, c)
	f.waitSynced(t)
	want := map[string]float64{
		"talos_proxy_invalidation_connected":           1,
		"talos_proxy_invalidation_fresh":               1,
		"talos_proxy_invalidation_watermark":           7,
		"talos_proxy_invalidation_applied_total":       2,
		"talos_proxy_invalidation_reconnects_total":    0,
		"talos_proxy_invalidation_nacks_total":         0,
		"talos_proxy_invalidation_seconds_since_heard": 0, // the clock is frozen
	}
	if d := cmp.Diff(want, gather()); d != "" {
		t.Errorf("metrics (-want +got):\n%s", d)
	}
}

func BenchmarkClient_Fresh(b *testing.B) {
	c, err := invalidation.New(&fakeApplier{}, invalidation.Options{Addr: "127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Fresh()
	}
}
