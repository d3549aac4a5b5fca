package xds

import (
	"context"
	"log/slog"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

// callbacks count open streams and report NACKs. go-control-plane calls them
// synchronously on each stream's goroutine, so they never take s.mu.
type callbacks struct{ s *Server }

var (
	_ deltav3.Callbacks = callbacks{}
	_ sotwv3.Callbacks  = callbacks{}
)

func (c callbacks) OnStreamOpen(context.Context, int64, string) error {
	c.s.streams.Add(1)
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *core.Node) { c.s.closed(streamKey{id: id}) }

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	c.s.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (callbacks) OnStreamResponse(context.Context, int64, *discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {
}

func (c callbacks) OnDeltaStreamOpen(context.Context, int64, string) error {
	c.s.streams.Add(1)
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) {
	c.s.closed(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	c.s.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (callbacks) OnStreamDeltaResponse(int64, *discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse) {
}

func (s *Server) closed(k streamKey) {
	s.streams.Add(-1)
	s.nodesMu.Lock()
	delete(s.nodes, k)
	s.nodesMu.Unlock()
}

// request remembers the stream's node ID and reports a NACK. Only the first
// request of a stream has to carry the node, and the delta server fills it
// in only after this callback, so the ID is kept per stream.
func (s *Server) request(k streamKey, node *core.Node, typeURL, nonce string, nack *statuspb.Status) {
	s.nodesMu.Lock()
	if node != nil {
		s.nodes[k] = node.GetId()
	}
	id := s.nodes[k]
	s.nodesMu.Unlock()
	if nack == nil {
		return
	}
	s.nacks.Inc()
	s.log.Warn("xds: sidecar rejected a response",
		slog.String("node", id),
		slog.Bool("delta", k.delta),
		slog.String("type_url", typeURL),
		slog.String("nonce", nonce),
		slog.Int("code", int(nack.GetCode())),
		slog.String("detail", nack.GetMessage()))
}
