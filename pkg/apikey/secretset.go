package apikey

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// MinSecretLen is the shortest HMAC secret NewSecretSet accepts, in bytes.
const MinSecretLen = 32

// Secret is one HMAC secret (secrets.hmac.current or one of
// secrets.hmac.retired). A zero ExpiresAt means it never expires; otherwise it
// stops verifying at ExpiresAt (the boundary is exclusive: at ExpiresAt it is
// already expired). It prints and logs as redacted.
type Secret struct {
	Value     []byte
	ExpiresAt time.Time
}

// String redacts the secret, so %v and %s never print it.
func (s Secret) String() string { return "[redacted]" }

// GoString redacts the secret, so %#v never prints it.
func (s Secret) GoString() string { return "apikey.Secret{[redacted]}" }

// LogValue implements slog.LogValuer: only the expiry reaches a log.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(slog.String("value", "[redacted]"), slog.Time("expires_at", s.ExpiresAt))
}

// SecretSet holds the current HMAC secret and the retired ones that still
// verify. New material (v1 checksums, v2 secret hashes, derived subkeys) is
// made under the current secret only; verification tries the current secret
// and then every retired secret that has not expired, always all of them.
//
// A SecretSet is immutable and safe for concurrent use. Each secret keeps a
// sync.Pool of keyed HMAC states, so the verify path neither re-keys HMAC nor
// allocates. The zero value and a nil *SecretSet hold no secret: they derive
// nothing and match nothing. Build one with NewSecretSet.
type SecretSet struct {
	keys []*secretKey // keys[0] is the current secret
}

// secretKey is one secret with its pools of keyed hashers.
type secretKey struct {
	expires time.Time // zero: never
	value   []byte    // private copy
	// mac holds *macState keyed by value.
	mac sync.Pool
	// imported holds *macState keyed by the importedLabel subkey of value.
	imported sync.Pool
}

// macState is one reusable HMAC-SHA256 with scratch space, so that writing
// strings and caller-owned slices through the hash.Hash interface neither
// allocates nor makes the caller's memory escape.
type macState struct {
	h       hash.Hash
	scratch [256]byte
	out     [sha256.Size]byte
}

func newMACState(key []byte) *macState {
	m := &macState{h: hmac.New(sha256.New, key)}
	m.h.Reset() // caches the ipad/opad states; later Resets only restore them
	return m
}

func (m *macState) writeString(s string) {
	for len(s) > 0 {
		n := copy(m.scratch[:], s)
		m.h.Write(m.scratch[:n])
		s = s[n:]
	}
}

func (m *macState) writeBytes(b []byte) {
	for len(b) > 0 {
		n := copy(m.scratch[:], b)
		m.h.Write(m.scratch[:n])
		b = b[n:]
	}
}

func (m *macState) writeLen(n int) {
	binary.BigEndian.PutUint64(m.scratch[:8], uint64(n))
	m.h.Write(m.scratch[:8])
}

// sum finishes the MAC into m.out and resets the state for the next use.
func (m *macState) sum() []byte {
	out := m.h.Sum(m.out[:0])
	m.h.Reset()
	return out
}

// Labels of the derivations this package makes itself. Derive labels are
// constant strings of the form "talos/<purpose>/v<N>/<name>"; never pass input
// as a label.
const (
	// importedLabel keys the optional keyed imported-key IDs.
	importedLabel = "talos/imported/v1/key"
	// secretHashLabel opens the message of a v2 secret hash. The NUL cannot
	// appear in a v1 checksum message (prefix and base58 characters only).
	secretHashLabel = "talos/apikey/v2/secret-hash\x00"
)

// NewSecretSet returns the set of the current secret and the retired ones.
// Every value must be at least MinSecretLen bytes; otherwise it returns an
// error wrapping credential.ErrInvalidArgument that names which secret is
// short, never its content. It copies every value: later changes to the
// caller's slices do not affect the set.
func NewSecretSet(current []byte, retired ...Secret) (*SecretSet, error) {
	if len(current) < MinSecretLen {
		return nil, credential.Invalid(fmt.Sprintf("current HMAC secret must be at least %d bytes", MinSecretLen))
	}
	s := &SecretSet{keys: make([]*secretKey, 0, 1+len(retired))}
	s.keys = append(s.keys, newSecretKey(current, time.Time{}))
	for i, r := range retired {
		if len(r.Value) < MinSecretLen {
			return nil, credential.Invalid(fmt.Sprintf("retired HMAC secret %d must be at least %d bytes", i, MinSecretLen))
		}
		s.keys = append(s.keys, newSecretKey(r.Value, r.ExpiresAt))
	}
	return s, nil
}

func newSecretKey(value []byte, expires time.Time) *secretKey {
	k := &secretKey{expires: expires, value: append([]byte(nil), value...)}
	k.mac.New = func() any { return newMACState(k.value) }
	sub := hmacOnce(k.value, importedLabel)
	k.imported.New = func() any { return newMACState(sub) }
	return k
}

func hmacOnce(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func (k *secretKey) activeAt(now time.Time) bool {
	return k.expires.IsZero() || now.Before(k.expires)
}

func (k *secretKey) getMAC() *macState  { return k.mac.Get().(*macState) }
func (k *secretKey) putMAC(m *macState) { k.mac.Put(m) }

// String describes the set without any secret material.
func (s *SecretSet) String() string {
	if s == nil || len(s.keys) == 0 {
		return "apikey.SecretSet{empty}"
	}
	return fmt.Sprintf("apikey.SecretSet{current, %d retired}", len(s.keys)-1)
}

// GoString is String, so %#v prints no secret either.
func (s *SecretSet) GoString() string { return s.String() }

// LogValue implements slog.LogValuer without any secret material.
func (s *SecretSet) LogValue() slog.Value {
	n := 0
	if s != nil && len(s.keys) > 0 {
		n = len(s.keys) - 1
	}
	return slog.GroupValue(slog.Int("retired", n))
}

// Derive returns HMAC-SHA256(current, label): a 32-byte subkey for one purpose,
// such as "talos/pagination/v1/cursor-key" or "talos/macaroon/v1/root-key", so
// one configured secret feeds several uses without any two colliding. The
// caller owns the returned slice. It returns nil for an empty set.
func (s *SecretSet) Derive(label string) []byte {
	if s == nil || len(s.keys) == 0 {
		return nil
	}
	return s.keys[0].derive(label)
}

func (k *secretKey) derive(label string) []byte {
	m := k.getMAC()
	m.writeString(label)
	out := append([]byte(nil), m.sum()...)
	k.putMAC(m)
	return out
}

// DeriveAll returns Derive(label) under the current secret and then under every
// retired secret still active at now, in configuration order: the keys to try
// when opening something sealed under an older secret. The caller owns the
// returned slices.
func (s *SecretSet) DeriveAll(label string, now time.Time) [][]byte {
	if s == nil || len(s.keys) == 0 {
		return nil
	}
	out := make([][]byte, 0, len(s.keys))
	for _, k := range s.keys {
		if k.activeAt(now) {
			out = append(out, k.derive(label))
		}
	}
	return out
}

// HashSecret returns the keyed hash a v2 key is stored under: HMAC-SHA256,
// keyed by the current secret, over
//
//	"talos/apikey/v2/secret-hash" 0x00 || u64be(len(id)) || id || u64be(len(secret)) || secret
//
// Binding the key ID means a stored hash cannot be moved to another row; the
// length prefixes make the encoding unambiguous. A database dump alone cannot
// test guesses without the HMAC secret. The caller owns the returned 32 bytes;
// it returns nil for an empty set.
func (s *SecretSet) HashSecret(id credential.KeyID, secret []byte) []byte {
	if s == nil || len(s.keys) == 0 {
		return nil
	}
	k := s.keys[0]
	m := k.getMAC()
	out := append([]byte(nil), m.hashSecret(id, secret)...)
	k.putMAC(m)
	return out
}

func (m *macState) hashSecret(id credential.KeyID, secret []byte) []byte {
	m.writeString(secretHashLabel)
	m.writeLen(len(id))
	m.writeString(string(id))
	m.writeLen(len(secret))
	m.writeBytes(secret)
	return m.sum()
}

// MatchSecret reports whether stored is the hash of (id, secret) under the
// current secret or under a retired secret still active at now. It compares
// with crypto/subtle and always evaluates every active secret, so its timing
// tells at most how many secrets are active, never which one matched or how
// much of the hash did. It does not allocate.
//
// A true answer under a retired secret means the row should be re-hashed with
// HashSecret before that secret expires.
func (s *SecretSet) MatchSecret(id credential.KeyID, secret, stored []byte, now time.Time) bool {
	if s == nil || len(stored) != sha256.Size {
		return false
	}
	match := 0
	for _, k := range s.keys {
		if !k.activeAt(now) {
			continue
		}
		m := k.getMAC()
		match |= subtle.ConstantTimeCompare(m.hashSecret(id, secret), stored)
		k.putMAC(m)
	}
	return match == 1
}

// ImportedIDsKeyed returns the keyed IDs of an imported key, one per secret
// active at now (current first): lowercase hex of HMAC-SHA256 keyed by
// Derive("talos/imported/v1/key") of that secret, over the same input as
// ImportedID. Unlike ImportedID, a database dump alone does not allow guessing
// low-entropy imported keys offline. Look the key up by each ID in turn; a hit
// under a retired secret should be re-keyed. The caller owns the slice.
func (s *SecretSet) ImportedIDsKeyed(tenant credential.Tenant, raw string, now time.Time) []credential.KeyID {
	if s == nil || len(s.keys) == 0 {
		return nil
	}
	nid := canonicalTenant(string(tenant))
	out := make([]credential.KeyID, 0, len(s.keys))
	for _, k := range s.keys {
		if !k.activeAt(now) {
			continue
		}
		m := k.imported.Get().(*macState)
		m.writeString(nid)
		m.scratch[0] = 0
		m.h.Write(m.scratch[:1])
		m.writeString(raw)
		var buf [2 * sha256.Size]byte
		hex.Encode(buf[:], m.sum())
		k.imported.Put(m)
		out = append(out, credential.KeyID(buf[:]))
	}
	return out
}
