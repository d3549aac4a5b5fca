// Package invalidation is the sidecar's client of the control plane's
// invalidation stream: a delta (incremental) aggregated discovery service
// stream of talos.sidecar.v1.Invalidation resources, one per changed key
// ("<tenant>/<key_id>"), plus the "~heartbeat" resource whose seq is the
// control plane's watermark.
//
// # What it does
//
// [Client.Run] subscribes with a wildcard subscription and hands every key
// invalidation to an [Applier] (the sidecar's pipeline, which evicts cached
// verdicts and keeps tombstones), then records the watermark with
// [Applier.Advance]. A response is applied whole or not at all: if one
// resource cannot be read, the response is NACKed and none of it is
// applied. When the stream breaks, Run reconnects with jittered
// exponential backoff and tells the server which key resources it holds
// (initial_resource_versions), so the server sends only what changed while
// the client was away, and always a fresh heartbeat.
//
// # Freshness
//
// [Client.Fresh] tells the pipeline whether cached verdicts may be trusted:
// the client has synced and has heard from the control plane within
// Options.MaxStaleness. A watchdog inside Run flips it, so the hot path reads
// one atomic and no clock. A stream on which nothing arrives for half of
// MaxStaleness, and at least 3s (the server refreshes the heartbeat every
// second), is torn down and reconnected, so a silently dead connection is
// replaced without waiting for TCP to notice. After a NACK the client keeps applying later
// invalidations but holds the watermark and stops counting responses as
// heard, until every rejected resource has been replaced or removed or a new
// stream syncs: a delta server does not resend a NACKed resource, so an
// invalidation may be missing, and a sidecar must never serve a revoked key
// silently.
//
// # Dependencies and concurrency
//
// It imports pkg/api (the wire message), pkg/credential and
// go-control-plane's protos; never the control plane, which it meets only on
// the wire. A Client is safe for concurrent use; Run may run once at a time.
// The Applier and the OnResync hook are called from Run's goroutine only,
// one call at a time.
package invalidation
