package xds

import (
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
)

// ads serves the aggregated discovery service with go-control-plane's delta
// and state-of-the-world stream handlers. It stands in for pkg/server/v3's
// server, which also links every other xDS service, among them one from a
// module (go-control-plane/ratelimit) this module does not require.
type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	delta deltav3.Server
	sotw  sotwv3.Server
}

var _ discovery.AggregatedDiscoveryServiceServer = (*ads)(nil)

func (a *ads) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(stream, resource.AnyType)
}

func (a *ads) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaStreamHandler(stream, resource.AnyType)
}
