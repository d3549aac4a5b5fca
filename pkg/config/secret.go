package config

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"time"
)

const redacted = "[redacted]"

// Secret is a configuration value that must never be printed: fmt (every
// verb, including %#v), encoding/json, encoding.TextMarshaler and slog all
// render a set Secret as "[redacted]" and an empty one as "". Only
// [Secret.Value] returns the real value.
//
// The value sits behind an unexported pointer, so even reflection-based
// printers that bypass the methods (fmt on an unexported field of another
// struct) show an address, not the secret. The zero value is the empty
// secret. A Secret is immutable and safe for concurrent use.
type Secret struct {
	v *string
}

// NewSecret wraps v.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{v: &v}
}

// Value returns the secret itself. Call it only where the secret is used.
func (s Secret) Value() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Value() == "" }

// Equal reports whether s and o hold the same value, in constant time for
// equal lengths. go-cmp uses it, so Configs compare without options.
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.Value()), []byte(o.Value())) == 1
}

func (s Secret) display() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string { return s.display() }

// GoString returns "[redacted]", or "" for an empty secret.
func (s Secret) GoString() string { return s.display() }

// Format makes every fmt verb print the redacted form.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.display())) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.display()) }

// MarshalText implements encoding.TextMarshaler with the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.display()), nil }

// MarshalJSON implements json.Marshaler with the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.display() + `"`), nil }

// UnmarshalText sets the secret from text (for flags and decoders). It is not
// the inverse of MarshalText: marshalling redacts.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = NewSecret(string(b))
	return nil
}

// RetiredSecret is one item of secrets.hmac.retired: a former HMAC secret that
// still verifies until ExpiresAt. In a file an item is either a bare string
// (never expires) or {value, expires_at} with expires_at in RFC 3339.
type RetiredSecret struct {
	Value Secret `koanf:"value"`
	// ExpiresAt is zero when the secret never expires.
	ExpiresAt time.Time `koanf:"expires_at"`
}

// Active reports whether the secret still verifies at now. The expiry
// boundary is exclusive: at ExpiresAt the secret no longer verifies.
func (r RetiredSecret) Active(now time.Time) bool {
	return r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt)
}

// RetiredIssuer is one item of credentials.issuer_retired: a former issuer
// still accepted in derived tokens until ExpiresAt. Same shapes as
// RetiredSecret.
type RetiredIssuer struct {
	Value string `koanf:"value"`
	// ExpiresAt is zero when the issuer is accepted forever.
	ExpiresAt time.Time `koanf:"expires_at"`
}

// Active reports whether the issuer is still accepted at now (exclusive
// boundary).
func (r RetiredIssuer) Active(now time.Time) bool {
	return r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt)
}
