package sidecarv1

import "strings"

// The wire names of the invalidation stream, shared by the control plane that
// serves it and the sidecars that read it, so the two ends cannot drift.
const (
	// InvalidationTypeURL is the xDS type URL of Invalidation resources.
	InvalidationTypeURL = "type.googleapis.com/talos.sidecar.v1.Invalidation"

	// HeartbeatName names the heartbeat resource: an Invalidation with empty
	// tenant and key ID whose seq is the watermark. No key resource can take
	// this name, since every key resource name holds a "/".
	HeartbeatName = "~heartbeat"
)

// InvalidationName is the resource name of a key's Invalidation:
// "<tenant>/<key_id>".
func InvalidationName(tenant, keyID string) string { return tenant + "/" + keyID }

// ParseInvalidationName splits a key resource name; ok is false for any name
// that InvalidationName cannot have produced from a non-empty tenant and key
// ID (the heartbeat included). Tenants never hold a "/"; key IDs may.
func ParseInvalidationName(name string) (tenant, keyID string, ok bool) {
	tenant, keyID, ok = strings.Cut(name, "/")
	return tenant, keyID, ok && tenant != "" && keyID != ""
}
