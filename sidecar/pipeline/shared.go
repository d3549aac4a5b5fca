package pipeline

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// MinSharedSecret is the shortest Options.SharedSecret accepted, in bytes.
const MinSharedSecret = 32

// sealer protects what the sidecars put in their shared cache. Redis is a
// trust boundary: whoever can read it must learn nothing that tests a
// guessed credential, and whoever can write to it must not be able to plant
// or alter a verdict. Two subkeys are derived from the one secret the
// sidecars share (HKDF-SHA256, one label each):
//
//   - the Redis key of a verdict is HMAC-SHA256(key subkey, L1 key) instead
//     of the L1 key, an unkeyed hash of the credential that anyone could
//     compute from a guess;
//   - the stored value is version || nonce || XChaCha20-Poly1305(entry),
//     with the version and the Redis key as associated data. The AEAD both
//     authenticates the entry (a forged, altered or moved entry fails to
//     open, and is a miss) and hides it: an entry names the key ID, which
//     for an imported key is an unkeyed hash of the credential itself.
//
// Nonces are random (192 bits), so any number of sidecars may write under
// one secret without coordinating.
type sealer struct {
	keyKey []byte
	aead   cipher.AEAD
}

const (
	sealVersion    = 1
	labelKey       = "talos/sidecar/shared-cache/v1/key"
	labelEntry     = "talos/sidecar/shared-cache/v1/entry"
	sealedOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

var errShortSecret = fmt.Errorf("pipeline: a shared cache needs a secret of at least %d bytes shared by its sidecars (proxy.cache.redis.secret)", MinSharedSecret)

func newSealer(secret []byte) (*sealer, error) {
	if len(secret) < MinSharedSecret {
		return nil, errShortSecret
	}
	kk, err := hkdf.Key(sha256.New, secret, nil, labelKey, sha256.Size)
	if err != nil {
		return nil, err
	}
	ek, err := hkdf.Key(sha256.New, secret, nil, labelEntry, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(ek)
	if err != nil {
		return nil, err
	}
	return &sealer{keyKey: kk, aead: aead}, nil
}

// key returns the shared-cache key of the L1 key k.
func (s *sealer) key(k string) string {
	m := hmac.New(sha256.New, s.keyKey)
	m.Write([]byte(k))
	return string(m.Sum(nil))
}

// seal encrypts and authenticates an encoded entry stored under key.
func (s *sealer) seal(key string, plain []byte) []byte {
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, sealedOverhead+len(plain))
	out[0] = sealVersion
	nonce := out[1:]
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	return s.aead.Seal(out, nonce, plain, s.ad(key))
}

var errSealed = errors.New("pipeline: shared-cache entry is not authentic")

// open returns the encoded entry sealed under key, or an error when b is not
// an entry sealed with this secret for this key (forged, altered, moved from
// another key, or of another version).
func (s *sealer) open(key string, b []byte) ([]byte, error) {
	if len(b) < sealedOverhead || b[0] != sealVersion {
		return nil, errSealed
	}
	nonce, box := b[1:1+chacha20poly1305.NonceSizeX], b[1+chacha20poly1305.NonceSizeX:]
	plain, err := s.aead.Open(nil, nonce, box, s.ad(key))
	if err != nil {
		return nil, errSealed
	}
	return plain, nil
}

// ad is the associated data of an entry under key: the version and the key.
func (s *sealer) ad(key string) []byte {
	ad := make([]byte, 0, 1+len(key))
	ad = append(ad, sealVersion)
	return append(ad, key...)
}
