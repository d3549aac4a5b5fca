package invalidation

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamState is what the client knows about one stream.
type streamState struct {
	// synced: a response has been applied with nothing rejected
	// outstanding, at least once.
	synced bool
	// rejected holds the names of the resources of NACKed responses that no
	// later response has replaced or removed. A delta server considers a
	// resource sent whether or not it was ACKed, so it will not send these
	// again on this stream unless they change.
	rejected map[string]struct{}
}

// handle applies resp and returns the request that answers it: an ACK, or
// a NACK when a resource cannot be read, in which case nothing of resp is
// applied.
//
// An applied response passes its key invalidations to the Applier in
// order, then, unless a rejected resource is outstanding, advances the
// watermark to the highest seq it holds and counts as heard. Holding the
// watermark while a rejection is outstanding matters: a rejected
// invalidation may be below the seq of a later heartbeat, and advancing past
// it would tell the pipeline it knows a change it never saw.
func (c *Client) handle(resp *discoveryv3.DeltaDiscoveryResponse, st *streamState) *discoveryv3.DeltaDiscoveryRequest {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: TypeURL, ResponseNonce: resp.GetNonce()}
	invs, maxSeq, forgotten, err := decode(resp)
	if err != nil {
		c.nacks.Add(1)
		c.synced.Store(false)
		// A rejected response may have carried a revocation: stop trusting
		// the caches now rather than at the staleness bound. The next
		// applied response that clears the rejection resyncs (and flushes).
		c.stop()
		for _, r := range resp.GetResources() {
			if r.GetName() != HeartbeatName {
				st.rejected[r.GetName()] = struct{}{}
			}
		}
		c.log.Error("rejected an invalidation response; holding the watermark until the rejected resources are replaced",
			"error", err, "nonce", resp.GetNonce(), "resources", len(resp.GetResources()))
		req.ErrorDetail = status.New(codes.InvalidArgument, err.Error()).Proto()
		return req
	}
	for _, inv := range invs {
		c.applier.Invalidate(inv.tenant, inv.keyID, inv.seq)
		c.applied.Add(1)
		c.versions[inv.name] = inv.version
		delete(st.rejected, inv.name)
	}
	for _, name := range resp.GetRemovedResources() {
		delete(c.versions, name)
		delete(st.rejected, name)
	}
	// Only a response carrying the heartbeat says the server is current: a
	// control plane that cannot read its outbox withdraws it.
	beat := false
	for _, r := range resp.GetResources() {
		if r.GetName() == HeartbeatName {
			beat = true
			break
		}
	}
	if len(st.rejected) > 0 {
		c.log.Warn("applied an invalidation response; the watermark stays held by rejected resources",
			"rejected", len(st.rejected), "watermark", c.watermark.Load())
		return req
	}
	if forgotten > 0 {
		c.applier.Forget(forgotten)
	}
	if maxSeq > c.watermark.Load() {
		c.applier.Advance(maxSeq)
		c.watermark.Store(maxSeq)
	}
	if !beat {
		return req
	}
	if !st.synced {
		st.synced = true
		c.log.Info("invalidation stream synced", "watermark", c.watermark.Load(), "keys_held", len(c.versions))
	}
	c.synced.Store(true)
	c.heard()
	return req
}

// heard records an applied response: Fresh turns true, after onResync if
// Fresh had lapsed.
func (c *Client) heard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lapsed {
		c.lapsed = false
		if c.onResync != nil {
			// While lapsed, Fresh is false and the watchdog leaves it alone,
			// so the hook can run unlocked.
			c.mu.Unlock()
			c.onResync()
			c.mu.Lock()
		}
		c.log.Info("invalidation stream resynced; cached verdicts are fresh again")
	}
	c.lastHeard.Store(c.sinceBase(c.now()))
	c.fresh.Store(true)
	c.syncedOnce.Store(true)
}
