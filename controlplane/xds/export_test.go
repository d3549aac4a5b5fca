package xds

import (
	"errors"
	"fmt"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"google.golang.org/protobuf/proto"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
)

// CheckConsistency reports whether the cache holds exactly the server's
// entries plus the heartbeat, with the same values, and whether the counters
// and the retention queue agree with them.
func (s *Server) CheckConsistency() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.cache.GetResources()
	if len(got) != len(s.entries)+1 {
		return fmt.Errorf("cache holds %d resources, want %d entries + heartbeat", len(got), len(s.entries))
	}
	hb, ok := got[HeartbeatName].(*sidecarv1.Invalidation)
	if !ok {
		return fmt.Errorf("cache heartbeat is %T", got[HeartbeatName])
	}
	if hb.GetSeq() != s.watermark || s.Watermark() != s.watermark {
		return fmt.Errorf("heartbeat seq %d, Watermark %d, want %d", hb.GetSeq(), s.Watermark(), s.watermark)
	}
	if !hb.GetTime().AsTime().Equal(s.beat) {
		return fmt.Errorf("heartbeat time %v, want %v", hb.GetTime().AsTime(), s.beat)
	}
	if s.Resources() != len(s.entries) {
		return fmt.Errorf("Resources() = %d, want %d", s.Resources(), len(s.entries))
	}
	queued := map[string]int{}
	for _, q := range s.queue {
		if e, ok := s.entries[q.name]; ok && e.gen == q.gen {
			queued[q.name]++
		}
	}
	for name, e := range s.entries {
		if want := resourceName(credential.Tenant(e.inv.GetTenant()), credential.KeyID(e.inv.GetKeyId())); name != want {
			return fmt.Errorf("entry %q holds the value of %q", name, want)
		}
		if !proto.Equal(got[name], e.inv) {
			return fmt.Errorf("cache value of %q = %v, want %v", name, got[name], e.inv)
		}
		if queued[name] != 1 {
			return fmt.Errorf("entry %q is queued %d times for retention, want once", name, queued[name])
		}
	}
	return nil
}

// EnvoySnapshot returns the snapshot served to every Envoy; it fails without
// Options.Envoy.
func (s *Server) EnvoySnapshot() (*cachev3.Snapshot, error) {
	if s.envoy == nil {
		return nil, errors.New("no Envoy resources")
	}
	snap, err := s.envoy.GetSnapshot(envoyNode)
	if err != nil {
		return nil, err
	}
	return snap.(*cachev3.Snapshot), nil
}
