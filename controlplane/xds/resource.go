package xds

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
)

// The wire names, defined once beside the protos for both ends.
const (
	// InvalidationType is the xDS type URL of the resources the Server
	// publishes; their values are sidecarv1.Invalidation messages.
	InvalidationType = sidecarv1.InvalidationTypeURL
	// HeartbeatName names the heartbeat resource, whose time is also when it
	// was last refreshed.
	HeartbeatName = sidecarv1.HeartbeatName
)

// resourceName is the xDS name of a key's invalidation resource.
func resourceName(tenant credential.Tenant, id credential.KeyID) string {
	return sidecarv1.InvalidationName(string(tenant), string(id))
}

// invalidationType is the wire word for an event type. An event type this
// package does not know still invalidates, as "updated": telling a sidecar to
// re-verify a key it did not need to costs one upstream call, while dropping
// the event could leave a revoked key allowed.
func invalidationType(t credential.EventType) (string, bool) {
	switch t {
	case credential.EventUpdated, credential.EventRevoked, credential.EventRotated, credential.EventDeleted:
		return t.String(), true
	}
	return credential.EventUpdated.String(), false
}

// newInvalidation builds the resource value of an event.
func newInvalidation(e credential.Event, typ string) *sidecarv1.Invalidation {
	return &sidecarv1.Invalidation{
		Tenant: string(e.Tenant),
		KeyId:  string(e.KeyID),
		Seq:    e.Seq,
		Type:   typ,
		Time:   timestamppb.New(e.Time),
	}
}

// newHeartbeat builds the heartbeat resource value.
func newHeartbeat(watermark, forgotten int64, at time.Time) *sidecarv1.Invalidation {
	return &sidecarv1.Invalidation{Seq: watermark, Forgotten: forgotten, Time: timestamppb.New(at)}
}
