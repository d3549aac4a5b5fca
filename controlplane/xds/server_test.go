package xds_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/talos-project/talos/controlplane/xds"
	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
)

func inv(e credential.Event, typ string) *sidecarv1.Invalidation {
	return &sidecarv1.Invalidation{
		Tenant: string(e.Tenant), KeyId: string(e.KeyID), Seq: e.Seq, Type: typ, Time: timestamppb.New(e.Time),
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    xds.Options
		wantErr bool
	}{
		{name: "zero options", opts: xds.Options{}},
		{name: "negative retention", opts: xds.Options{Retention: -time.Second}, wantErr: true},
		{name: "negative heartbeat interval", opts: xds.Options{HeartbeatInterval: -time.Second}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := xds.New(tc.opts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: error %v, want error %t", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if s.Watermark() != 0 || s.Resources() != 0 || s.Streams() != 0 {
				t.Errorf("new server: watermark %d, resources %d, streams %d; want zeros", s.Watermark(), s.Resources(), s.Streams())
			}
			mustConsistent(t, s)
		})
	}
}

func TestServer_Publish(t *testing.T) {
	t.Parallel()
	// A sidecar subscribes as a wildcard either the legacy way (no names)
	// or explicitly ("*"); both must see the same stream.
	for _, tc := range []struct {
		name      string
		subscribe []string
	}{
		{name: "legacy wildcard", subscribe: nil},
		{name: "explicit wildcard", subscribe: []string{"*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustNew(t, xds.Options{})
			c := connect(t, newTestServer(t, s), "sidecar-1", tc.subscribe, nil)

			first := c.recv()
			if hb := first.heartbeat(); hb == nil || hb.GetSeq() != 0 || len(first.invs) != 1 || len(first.removed) != 0 {
				t.Fatalf("first response %v removed %v: want only the heartbeat at seq 0", first.invs, first.removed)
			}
			c.ack(first)

			batch := []credential.Event{
				event(1, "t1", "created", credential.EventCreated),
				event(2, "t1", "k-revoked", credential.EventRevoked),
				event(3, "t1", "k-updated", credential.EventUpdated),
				event(4, "t1", "k-rotated", credential.EventRotated),
				event(5, "t2", "k-deleted", credential.EventDeleted),
				event(6, "t2", "created-too", credential.EventCreated),
			}
			s.Publish(batch)
			mustConsistent(t, s)

			u := c.recv()
			want := map[string]*sidecarv1.Invalidation{
				"t1/k-revoked": inv(batch[1], "revoked"),
				"t1/k-updated": inv(batch[2], "updated"),
				"t1/k-rotated": inv(batch[3], "rotated"),
				"t2/k-deleted": inv(batch[4], "deleted"),
			}
			if d := cmp.Diff(want, u.keys(), protocmp.Transform()); d != "" {
				t.Errorf("published resources (-want +got):\n%s", d)
			}
			// The watermark counts created events too: the sidecar has
			// heard of everything up to seq 6.
			if got := u.heartbeat().GetSeq(); got != 6 {
				t.Errorf("heartbeat seq in the same response = %d, want 6", got)
			}
			if s.Watermark() != 6 || s.Resources() != 4 {
				t.Errorf("Watermark %d Resources %d, want 6 and 4", s.Watermark(), s.Resources())
			}
			c.ack(u)

			// A later event of the same key replaces its resource.
			again := event(7, "t1", "k-revoked", credential.EventDeleted)
			s.Publish([]credential.Event{again})
			mustConsistent(t, s)
			u2 := c.recv()
			if d := cmp.Diff(map[string]*sidecarv1.Invalidation{"t1/k-revoked": inv(again, "deleted")}, u2.keys(), protocmp.Transform()); d != "" {
				t.Errorf("replacing resource (-want +got):\n%s", d)
			}
			if u2.versions["t1/k-revoked"] == u.versions["t1/k-revoked"] {
				t.Error("replaced resource kept its version")
			}
			if got := u2.heartbeat().GetSeq(); got != 7 {
				t.Errorf("heartbeat seq = %d, want 7", got)
			}
			if s.Resources() != 4 {
				t.Errorf("Resources = %d, want 4", s.Resources())
			}
			c.ack(u2)

			// A batch of created events only moves the watermark.
			s.Publish([]credential.Event{event(8, "t1", "new", credential.EventCreated)})
			u3 := c.recv()
			if len(u3.keys()) != 0 || u3.heartbeat().GetSeq() != 8 {
				t.Errorf("created-only batch sent %v, heartbeat %v; want only the heartbeat at 8", u3.keys(), u3.heartbeat())
			}
			mustConsistent(t, s)
		})
	}
}

func TestServer_PublishOrder(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{})
	c := connect(t, newTestServer(t, s), "sidecar-1", nil, nil)
	c.ack(c.recv())

	newer := event(9, "t", "k", credential.EventRevoked)
	s.Publish([]credential.Event{
		event(1, "t", "k", credential.EventUpdated),
		newer,
		event(2, "t", "k", credential.EventRotated),          // out of order: must not undo seq 9
		{Seq: 3, Tenant: "t", Type: credential.EventRevoked}, // no key ID: nothing to name
	})
	u := c.recv()
	if d := cmp.Diff(map[string]*sidecarv1.Invalidation{"t/k": inv(newer, "revoked")}, u.keys(), protocmp.Transform()); d != "" {
		t.Errorf("resources (-want +got):\n%s", d)
	}
	if u.heartbeat().GetSeq() != 9 {
		t.Errorf("heartbeat seq %d, want 9", u.heartbeat().GetSeq())
	}
	c.ack(u)

	// An event type this server does not know still invalidates.
	odd := credential.Event{Seq: 10, Tenant: "t", KeyID: "odd", Type: credential.EventType(200), Time: base}
	s.Publish([]credential.Event{odd})
	if d := cmp.Diff(map[string]*sidecarv1.Invalidation{"t/odd": inv(odd, "updated")}, c.recv().keys(), protocmp.Transform()); d != "" {
		t.Errorf("unknown event type (-want +got):\n%s", d)
	}
	mustConsistent(t, s)
}

func TestServer_NACK(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := mustNew(t, xds.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	reg := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMetrics(reg); err == nil {
		t.Error("second RegisterMetrics on the same registry: want an error")
	}
	c := connect(t, newTestServer(t, s), "sidecar-nack", nil, nil)

	first := c.recv()
	c.nack(first, "cannot apply")
	// The server handles the NACK before it can send the next response.
	s.Publish([]credential.Event{event(1, "t", "k", credential.EventRevoked)})
	u := c.recv()
	if _, ok := u.invs["t/k"]; !ok {
		t.Fatalf("stream after a NACK delivered %v, want t/k", u.invs)
	}
	if got := metric(t, reg, "talos_xds_nacks_total"); got != 1 {
		t.Errorf("talos_xds_nacks_total = %v, want 1", got)
	}
	out := logs.String()
	if !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, `"node":"sidecar-nack"`) || !strings.Contains(out, "cannot apply") {
		t.Errorf("NACK log = %s, want a warning naming the node and the detail", out)
	}

	// The ACK flow goes on.
	c.ack(u)
	s.Publish([]credential.Event{event(2, "t", "k2", credential.EventRevoked)})
	if u := c.recv(); u.invs["t/k2"] == nil {
		t.Errorf("after ACK got %v, want t/k2", u.invs)
	}
	if got := metric(t, reg, "talos_xds_nacks_total"); got != 1 {
		t.Errorf("talos_xds_nacks_total after an ACK = %v, want 1", got)
	}
	for name, want := range map[string]float64{
		"talos_xds_streams":         1,
		"talos_xds_resources":       2,
		"talos_xds_published_total": 2,
	} {
		if got := metric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestServer_Reconnect(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{})
	conn := newTestServer(t, s)

	c1 := connect(t, conn, "sidecar-1", nil, nil)
	c1.ack(c1.recv())
	s.Publish([]credential.Event{
		event(1, "t", "a", credential.EventRevoked),
		event(2, "t", "b", credential.EventRevoked),
	})
	c1.ack(c1.recv())
	known := c1.state.initialVersions()
	if len(known) != 2 {
		t.Fatalf("client 1 holds %v, want t/a and t/b", known)
	}
	c1.close()

	// Published while the sidecar is away.
	bAgain := event(3, "t", "b", credential.EventRotated)
	c := event(4, "t", "c", credential.EventDeleted)
	s.Publish([]credential.Event{bAgain, c})

	// The sidecar also claims a resource the server does not hold (one that
	// expired meanwhile, or one it heard from another replica).
	known["t/gone"] = "some-version"
	c2 := connect(t, conn, "sidecar-1", nil, known)
	u := c2.recv()
	want := map[string]*sidecarv1.Invalidation{"t/b": inv(bAgain, "rotated"), "t/c": inv(c, "deleted")}
	if d := cmp.Diff(want, u.keys(), protocmp.Transform()); d != "" {
		t.Errorf("first response after reconnect (-want +got):\n%s", d)
	}
	if u.heartbeat().GetSeq() != 4 {
		t.Errorf("heartbeat = %v, want seq 4", u.heartbeat())
	}
	if d := cmp.Diff([]string{"t/gone"}, u.removed); d != "" {
		t.Errorf("removed (-want +got):\n%s", d)
	}
	c2.ack(u)

	// Reconnecting with everything current yields just the heartbeat.
	c2.close()
	c3 := connect(t, conn, "sidecar-1", nil, c2.state.initialVersions())
	u3 := c3.recv()
	if len(u3.invs) != 1 || u3.heartbeat().GetSeq() != 4 || len(u3.removed) != 0 {
		t.Errorf("up-to-date reconnect got %v removed %v, want only the heartbeat at 4", u3.invs, u3.removed)
	}
	mustConsistent(t, s)
}

func TestServer_Retention(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: base}
	s := mustNew(t, xds.Options{Retention: time.Minute, HeartbeatInterval: 5 * time.Millisecond, Now: clock.Now})
	c := connect(t, newTestServer(t, s), "sidecar-1", nil, nil)
	runServer(t, s)

	s.Publish([]credential.Event{event(1, "t", "old", credential.EventRevoked)})
	clock.Add(30 * time.Second)
	s.Publish([]credential.Event{event(2, "t", "young", credential.EventRevoked)})
	c.until(func(_ update, st *state) bool { return st.invs["t/old"] != nil && st.invs["t/young"] != nil })

	if f := c.state.invs[xds.HeartbeatName].GetForgotten(); f != 0 {
		t.Errorf("heartbeat forgotten = %d before any expiry, want 0", f)
	}
	clock.Add(45 * time.Second) // old is 75s old, young 45s
	c.until(func(u update, _ *state) bool { return slices.Contains(u.removed, "t/old") })
	if c.state.invs["t/young"] == nil || s.Resources() != 1 {
		t.Errorf("after old expired: client holds %v, server %d resources; want t/young and 1", slices.Collect(maps.Keys(c.state.invs)), s.Resources())
	}
	// The heartbeat says which invalidations are gone: verdicts tagged below
	// seq 1 can no longer be checked.
	if f := c.state.invs[xds.HeartbeatName].GetForgotten(); f != 1 {
		t.Errorf("heartbeat forgotten = %d after seq 1 expired, want 1", f)
	}
	mustConsistent(t, s)

	clock.Add(time.Minute)
	c.until(func(u update, _ *state) bool { return slices.Contains(u.removed, "t/young") })
	if len(c.state.invs) != 1 || s.Resources() != 0 {
		t.Errorf("after all expired: client holds %v, server %d resources; want only the heartbeat", c.state.invs, s.Resources())
	}
	mustConsistent(t, s)
}

func TestServer_Heartbeat(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{HeartbeatInterval: 50 * time.Millisecond})
	c := connect(t, newTestServer(t, s), "sidecar-1", nil, nil)
	runServer(t, s)

	first := c.recv()
	c.ack(first)
	last := first.heartbeat().GetTime().AsTime()
	beats := 0
	c.until(func(u update, _ *state) bool {
		hb := u.heartbeat()
		if hb == nil || len(u.invs) != 1 {
			t.Fatalf("idle stream sent %v, want heartbeats only", u.invs)
		}
		if at := hb.GetTime().AsTime(); !at.After(last) {
			t.Fatalf("heartbeat time %v does not follow %v", at, last)
		} else {
			last = at
		}
		beats++
		return beats >= 2
	})
	mustConsistent(t, s)
}

func TestServer_TwoClients(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{})
	conn := newTestServer(t, s)
	clients := []*deltaClient{connect(t, conn, "sidecar-1", nil, nil), connect(t, conn, "sidecar-2", []string{"*"}, nil)}
	for _, c := range clients {
		c.ack(c.recv())
	}
	poll(t, "two streams", func() bool { return s.Streams() == 2 })

	for seq := int64(1); seq <= 3; seq++ {
		e := event(seq, "t", fmt.Sprintf("k%d", seq), credential.EventRevoked)
		s.Publish([]credential.Event{e})
		for i, c := range clients {
			u := c.recv()
			if d := cmp.Diff(map[string]*sidecarv1.Invalidation{string(e.Tenant) + "/" + string(e.KeyID): inv(e, "revoked")}, u.keys(), protocmp.Transform()); d != "" {
				t.Errorf("client %d, seq %d (-want +got):\n%s", i, seq, d)
			}
			c.ack(u)
		}
	}
	for _, c := range clients {
		c.close()
	}
	poll(t, "no streams", func() bool { return s.Streams() == 0 })
}

func TestServer_ConcurrentPublish(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{HeartbeatInterval: 5 * time.Millisecond})
	conn := newTestServer(t, s)
	runServer(t, s)
	clients := []*deltaClient{connect(t, conn, "sidecar-1", nil, nil), connect(t, conn, "sidecar-2", nil, nil)}

	const publishers, batches, keys = 4, 50, 10
	want := map[string]int64{} // key -> highest seq
	var wg sync.WaitGroup
	for p := range publishers {
		var events []credential.Event
		for i := range batches {
			seq := int64(1 + p + publishers*i)
			name := fmt.Sprintf("k%d", (p+i)%keys)
			events = append(events, event(seq, "t", name, credential.EventRevoked))
			want["t/"+name] = max(want["t/"+name], seq)
		}
		wg.Go(func() {
			for i := 0; i < len(events); i += 5 {
				s.Publish(events[i : i+5])
			}
		})
	}
	const top = publishers * batches

	var cw sync.WaitGroup
	for _, c := range clients {
		cw.Go(func() {
			c.until(func(_ update, st *state) bool {
				if st.invs[xds.HeartbeatName].GetSeq() != top {
					return false
				}
				got := map[string]int64{}
				for name, inv := range st.invs {
					if name != xds.HeartbeatName {
						got[name] = inv.GetSeq()
					}
				}
				return cmp.Equal(want, got)
			})
		})
	}
	wg.Wait()
	cw.Wait()
	if s.Watermark() != top || s.Resources() != keys {
		t.Errorf("Watermark %d Resources %d, want %d and %d", s.Watermark(), s.Resources(), top, keys)
	}
	mustConsistent(t, s)
}

// TestServer_SotW checks the state-of-the-world stream the same ADS service
// serves: a first request gets every resource.
func TestServer_SotW(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{})
	conn := newTestServer(t, s)
	s.Publish([]credential.Event{event(1, "t", "k", credential.EventRevoked)})

	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "sotw"}, TypeUrl: xds.InvalidationType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() == "" {
		t.Error("sotw response without a version")
	}
	got := map[string]int64{}
	for _, a := range resp.GetResources() {
		inv := new(sidecarv1.Invalidation)
		if err := a.UnmarshalTo(inv); err != nil {
			t.Fatal(err)
		}
		// State-of-the-world resources carry no name: the heartbeat is
		// the one without a key.
		got[inv.GetTenant()+"/"+inv.GetKeyId()] = inv.GetSeq()
	}
	if d := cmp.Diff(map[string]int64{"/": 1, "t/k": 1}, got); d != "" {
		t.Errorf("sotw resources by tenant/key -> seq (-want +got):\n%s", d)
	}
}

func TestServer_RunEndsStreams(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{})
	c := connect(t, newTestServer(t, s), "sidecar-1", nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c.ack(c.recv())
	poll(t, "one stream", func() bool { return s.Streams() == 1 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	select {
	case err := <-c.err:
		if !isEnd(err) {
			t.Errorf("stream ended with %v, want EOF", err)
		}
	case <-time.After(waitFor):
		t.Fatal("stream still open after Run returned")
	}
	poll(t, "no streams", func() bool { return s.Streams() == 0 })
}

func TestServer_OtherTypeURL(t *testing.T) {
	t.Parallel()
	s := mustNew(t, xds.Options{})
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(newTestServer(t, s)).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err == nil {
		t.Fatalf("Recv = %v, want the stream to fail", r)
	}
}
