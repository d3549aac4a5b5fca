package xds_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/xds"
)

// TestHeartbeatWithdrawnWhileNotLive: a server whose outbox tailer cannot
// read withdraws the heartbeat, from open streams and from new ones, and
// restores it when the tailer recovers.
func TestHeartbeatWithdrawnWhileNotLive(t *testing.T) {
	var live atomic.Bool
	live.Store(true)
	s := mustNew(t, xds.Options{HeartbeatInterval: 10 * time.Millisecond, Live: live.Load})
	runServer(t, s)
	conn := newTestServer(t, s)

	c := connect(t, conn, "sidecar-1", nil, nil)
	c.until(func(u update, _ *state) bool { return u.heartbeat() != nil })

	live.Store(false)
	c.until(func(u update, _ *state) bool { return slices.Contains(u.removed, xds.HeartbeatName) })
	c.close()

	// A stream opened meanwhile gets no heartbeat.
	c2 := connect(t, conn, "sidecar-2", nil, nil)
	u := c2.recv()
	c2.ack(u)
	if u.heartbeat() != nil {
		t.Fatal("a new stream got a heartbeat while the server is not live")
	}

	live.Store(true)
	c2.until(func(u update, _ *state) bool { return u.heartbeat() != nil })
}
