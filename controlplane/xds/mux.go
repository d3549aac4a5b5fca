package xds

import (
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// typeMux hands each watch to the cache of its type URL: the invalidation
// LinearCache, and the Envoy SnapshotCache for listeners and clusters when
// Options.Envoy is set. It stands in for go-control-plane's MuxCache so that
// a stream asking for a type this server does not serve fails with a status
// that says so ("no cache defined for key" is all MuxCache says). It is only
// read after New, so it is safe for concurrent use.
type typeMux map[string]cachev3.ConfigWatcher

var _ cachev3.ConfigWatcher = typeMux(nil)

func (m typeMux) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	c, err := m.cache(req.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	return c.CreateWatch(req, sub, out)
}

func (m typeMux) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	c, err := m.cache(req.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	return c.CreateDeltaWatch(req, sub, out)
}

// cache returns the cache of typeURL. The error ends the whole stream, with
// every other type it carries: that is how go-control-plane's servers treat a
// watch they cannot open.
func (m typeMux) cache(typeURL string) (cachev3.ConfigWatcher, error) {
	if c, ok := m[typeURL]; ok {
		return c, nil
	}
	if typeURL == resource.ListenerType || typeURL == resource.ClusterType {
		return nil, status.Errorf(codes.Unimplemented, "xds: %s is not served: this control plane serves no Envoy resources", typeURL)
	}
	return nil, status.Errorf(codes.Unimplemented, "xds: %s is not served", typeURL)
}
