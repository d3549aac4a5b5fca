package invalidation

import (
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
)

const (
	// TypeURL is the xDS type of the resources the client subscribes to;
	// their values are sidecarv1.Invalidation messages. The wire names are
	// defined once beside the protos, for both ends.
	TypeURL = sidecarv1.InvalidationTypeURL

	// HeartbeatName names the resource whose seq is the server's watermark.
	HeartbeatName = sidecarv1.HeartbeatName

	// NodeCluster is the cluster the client reports in its xDS node.
	NodeCluster = "talos-proxy"
)

// invalidation is one key invalidation read from a response.
type invalidation struct {
	name    string
	version string
	tenant  credential.Tenant
	keyID   credential.KeyID
	seq     int64
}

// decode reads every resource of resp. It returns the key invalidations in
// response order and the highest seq of all resources, the heartbeat
// included. A resource that is not an Invalidation, whose name is not
// HeartbeatName or "<tenant>/<key_id>" of its own value, or whose seq is
// negative fails the whole response: the error says which, and carries no
// secret (resources hold none).
//
// forgotten is the heartbeat's forgotten seq (0 without a heartbeat).
func decode(resp *discoveryv3.DeltaDiscoveryResponse) (out []invalidation, maxSeq, forgotten int64, err error) {
	if u := resp.GetTypeUrl(); u != TypeURL {
		return nil, 0, 0, fmt.Errorf("unexpected type %q", u)
	}
	var inv sidecarv1.Invalidation
	for _, r := range resp.GetResources() {
		name := r.GetName()
		if r.GetResource() == nil {
			return nil, 0, 0, fmt.Errorf("resource %q has no value", name)
		}
		if err := r.GetResource().UnmarshalTo(&inv); err != nil {
			return nil, 0, 0, fmt.Errorf("resource %q: %w", name, err)
		}
		if inv.GetSeq() < 0 {
			return nil, 0, 0, fmt.Errorf("resource %q has negative seq %d", name, inv.GetSeq())
		}
		maxSeq = max(maxSeq, inv.GetSeq())
		if name == HeartbeatName {
			if inv.GetTenant() != "" || inv.GetKeyId() != "" {
				return nil, 0, 0, fmt.Errorf("resource %q names a key", name)
			}
			if inv.GetForgotten() < 0 || inv.GetForgotten() > inv.GetSeq() {
				return nil, 0, 0, fmt.Errorf("resource %q has forgotten seq %d outside [0, %d]", name, inv.GetForgotten(), inv.GetSeq())
			}
			forgotten = inv.GetForgotten()
			continue
		}
		tenant, keyID, ok := sidecarv1.ParseInvalidationName(name)
		if !ok || tenant != inv.GetTenant() || keyID != inv.GetKeyId() {
			return nil, 0, 0, fmt.Errorf("resource name %q is not <tenant>/<key_id> of its value", name)
		}
		out = append(out, invalidation{
			name:    name,
			version: r.GetVersion(),
			tenant:  credential.Tenant(tenant),
			keyID:   credential.KeyID(keyID),
			seq:     inv.GetSeq(),
		})
	}
	return out, maxSeq, forgotten, nil
}
