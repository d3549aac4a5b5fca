package credential

import "time"

// EventType names a change that can turn an allow into a deny (or that a
// sidecar cache otherwise needs to hear about).
type EventType uint8

const (
	EventCreated EventType = iota + 1
	EventUpdated
	EventRevoked
	EventRotated
	EventDeleted
)

func (t EventType) String() string {
	switch t {
	case EventCreated:
		return "created"
	case EventUpdated:
		return "updated"
	case EventRevoked:
		return "revoked"
	case EventRotated:
		return "rotated"
	case EventDeleted:
		return "deleted"
	}
	return "unknown"
}

// Event is one row of the outbox, written in the same transaction as the change
// it describes. Seq is assigned by the store and orders events; it is zero
// until the event has been stored.
type Event struct {
	Seq    int64
	Tenant Tenant
	Kind   Kind
	KeyID  KeyID
	Type   EventType
	Time   time.Time
}
