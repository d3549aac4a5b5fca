package invalidation_test

import (
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/talos-project/talos/sidecar/invalidation"
)

// TestClient_Fresh_needsHeartbeat: a control plane that cannot read its
// outbox withdraws the heartbeat; responses without one are applied and
// acknowledged but never make the client fresh.
func TestClient_Fresh_needsHeartbeat(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	a := &fakeApplier{}
	clock := newFakeClock()
	c := newTestClient(t, f, a, invalidation.Options{MaxStaleness: 100 * time.Millisecond, Now: clock.Now})
	run(t, c)
	fs := f.nextStream(t)
	checkRequest(t, fs.nextRequest(t), ack(fs.initialNonce))
	if !c.Fresh() {
		t.Fatal("not fresh after the first sync")
	}
	clock.advance(101 * time.Millisecond)
	waitFor(t, "Fresh to turn false", func() bool { return !c.Fresh() })

	// Invalidations and the heartbeat's removal, without a heartbeat.
	nonce := f.sendRaw(nil, invalidation.HeartbeatName)
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	nonce = f.sendRaw([]*discoveryv3.Resource{mustResource(key("t1", "k1", 5), "t1/k1", "v1")})
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	if c.Fresh() {
		t.Fatal("fresh from responses without a heartbeat")
	}
	if got := a.snapshot(); len(got) == 0 {
		t.Fatal("the invalidation was not applied")
	}

	nonce = f.publish()
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	if !c.Fresh() {
		t.Fatal("not fresh once the heartbeat is back")
	}
}

// TestClient_Forget passes the heartbeat's forgotten seq to the Applier.
func TestClient_Forget(t *testing.T) {
	t.Parallel()
	f := newFakeADS(t)
	a := &fakeApplier{}
	c := newTestClient(t, f, a, invalidation.Options{})
	run(t, c)
	fs := f.waitSynced(t)
	f.mu.Lock()
	f.forgotten = 2
	f.mu.Unlock()
	nonce := f.publish(key("t", "k", 3))
	checkRequest(t, fs.nextRequest(t), ack(nonce))
	got := a.snapshot()
	if !slices.Contains(got, "forget 2") {
		t.Fatalf("applier calls %v, want forget 2", got)
	}
}
