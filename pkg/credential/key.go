package credential

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Tenant identifies a network (Talos's NID). Every row, query, cache entry and
// derived token carries one. Single-tenant deployments use DefaultTenant.
type Tenant string

// DefaultTenant is the nil UUID Talos uses when multi-tenancy is off.
const DefaultTenant Tenant = "00000000-0000-0000-0000-000000000000"

// KeyID identifies a key within a tenant and kind. Issued keys use a UUID;
// imported keys use the hex digest of their tenant-bound hash. Key IDs are
// public: they appear in logs, events and API responses.
type KeyID string

// Kind tells issued keys (minted by Talos) from imported ones (brought in by
// the operator and looked up by hash).
type Kind uint8

const (
	KindIssued Kind = iota + 1
	KindImported
)

func (k Kind) String() string {
	switch k {
	case KindIssued:
		return "issued"
	case KindImported:
		return "imported"
	}
	return "unknown"
}

// State is the persisted lifecycle state. Expiry is computed, never stored: see
// Key.EffectiveState.
type State uint8

const (
	StateActive State = iota + 1
	StateRevoked
	StateExpired // computed at read time only
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateRevoked:
		return "revoked"
	case StateExpired:
		return "expired"
	}
	return "unknown"
}

// Visibility marks publishable keys, which get the public prefix.
type Visibility uint8

const (
	VisibilitySecret Visibility = iota + 1
	VisibilityPublic
)

// RevocationReason follows RFC 5280's reasons, as Talos does.
type RevocationReason uint8

const (
	ReasonUnspecified RevocationReason = iota
	ReasonKeyCompromise
	ReasonAffiliationChanged
	ReasonSuperseded
	ReasonPrivilegeWithdrawn
)

// RatePolicy is a key's rate-limit policy: Quota units per Window.
type RatePolicy struct {
	Quota  int64
	Window time.Duration
	Unit   string
}

// Key is one API key as stored: never the secret, only a keyed hash of it.
// The zero value is not a valid key.
type Key struct {
	Tenant     Tenant
	Kind       Kind
	ID         KeyID
	Name       string
	ActorID    string
	Scopes     []string
	Metadata   json.RawMessage // a JSON object, or nil for {}
	Status     State
	Visibility Visibility
	RatePolicy *RatePolicy
	// AllowedCIDRs restricts the client addresses that may present the key;
	// empty means unrestricted.
	AllowedCIDRs []netip.Prefix

	RevocationReason      RevocationReason
	RevocationDescription string

	CreateTime   time.Time
	UpdateTime   time.Time
	ExpireTime   time.Time // zero: never expires
	LastUsedTime time.Time // zero: never used (or not yet recorded)

	// RequestID is the caller's idempotency key for the create that made this
	// key; empty when none was given.
	RequestID string

	// Issued keys only.
	Prefix  string // token prefix the key was issued with
	Version string // credential format: "v1" or "v2"
	// SecretHash is the keyed hash of a v2 key's random secret. v1 keys have
	// none: their checksum is recomputed from the identifier.
	SecretHash []byte
	// SupersededBy is set on a key that was rotated with a grace period: it
	// stays valid until ExpireTime but can no longer be rotated.
	SupersededBy KeyID
}

// EffectiveState is the state a reader sees at now: revoked wins over expired.
func (k *Key) EffectiveState(now time.Time) State {
	if k.Status == StateRevoked {
		return StateRevoked
	}
	if !k.ExpireTime.IsZero() && !now.Before(k.ExpireTime) {
		return StateExpired
	}
	return StateActive
}

// AllowsIP reports whether addr may present the key (see IPAllowed).
func (k *Key) AllowsIP(addr netip.Addr) bool { return IPAllowed(k.AllowedCIDRs, addr) }
