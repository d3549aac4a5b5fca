// Package xds pushes key invalidations to sidecars over a delta
// (incremental) aggregated discovery service stream, built on
// go-control-plane's xDS server and LinearCache.
//
// The control plane's outbox tailer hands committed events to
// [Server.Publish] in sequence order. Every event that can turn an allow into
// a deny becomes one resource of type [InvalidationType], named
// "<tenant>/<key_id>", whose value is a sidecarv1.Invalidation; a later event
// of the same key replaces it. Alongside them lives one heartbeat resource,
// [HeartbeatName], whose seq is the watermark: the highest sequence handed to
// Publish. Each Publish updates the heartbeat in the same cache update as its
// events, so a sidecar that has applied a whole response holding heartbeat seq
// N has seen every invalidation up to N. [Server.Run] refreshes the heartbeat
// every interval (so a sidecar can tell a silent stream from a dead one) and
// removes invalidations older than the retention.
//
// With [Options].Envoy set, the same service also serves Envoy's own
// resources, for Envoys whose bootstrap takes LDS and CDS over ADS
// (deploy/envoy/envoy-ads.yaml): the listener and clusters of
// [EnvoyResources], which put the ext_authz filter in front of the protected
// service and point it at the local talos proxy. They are built once, by New,
// into a go-control-plane SnapshotCache that gives every node the same
// consistent snapshot, versioned by a hash of its content. Each watch goes to
// the cache of its type URL; a type neither cache serves fails the stream.
//
// The package imports pkg/api (the wire message), pkg/credential (the event)
// and go-control-plane. It never imports the sidecar: the client in
// sidecar/invalidation meets it on the wire only.
//
// A Server is safe for concurrent use. Publish and the periodic tick are
// serialised by one mutex, so the cache sees a single, ordered series of
// updates; stream handling runs on gRPC's goroutines and only touches atomic
// counters and a small node-ID table.
package xds
