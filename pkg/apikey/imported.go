package apikey

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"

	"github.com/talos-project/talos/pkg/credential"
)

// hashBufLen bounds the inputs ImportedID and CacheKey hash from a stack
// buffer; longer ones stream through a heap hasher.
const hashBufLen = 512

// ImportedID returns the ID of an imported key, as Talos computes it: the
// lowercase hex SHA-512/256 of nid || 0x00 || raw, where nid is the tenant's
// canonical UUID string (as Talos's NID.String()) when the tenant parses as a
// UUID, else the tenant string. Binding the tenant means the same raw key in
// two tenants gives unrelated IDs.
//
// There is no secret in it: anyone with the ID can test guesses of raw offline,
// so low-entropy imported keys should use SecretSet.ImportedIDsKeyed instead.
func ImportedID(tenant credential.Tenant, raw string) credential.KeyID {
	nid := canonicalTenant(string(tenant))
	var sum [sha512.Size256]byte
	if n := len(nid) + 1 + len(raw); n <= hashBufLen {
		var buf [hashBufLen]byte
		i := copy(buf[:], nid)
		buf[i] = 0
		i++
		i += copy(buf[i:], raw)
		sum = sha512.Sum512_256(buf[:i])
	} else {
		h := sha512.New512_256()
		h.Write([]byte(nid))
		h.Write([]byte{0})
		h.Write([]byte(raw))
		h.Sum(sum[:0])
	}
	var out [2 * sha512.Size256]byte
	hex.Encode(out[:], sum[:])
	return credential.KeyID(out[:])
}

// cacheKeyLabel opens every CacheKey input.
const cacheKeyLabel = "talos/cache-key/v1\x00"

// CacheKey returns the key a sidecar caches a verdict under: SHA-256 over
//
//	"talos/cache-key/v1" 0x00 || u64be(len(tenant)) || tenant || u64be(len(cred)) || cred
//
// The sidecar never holds the HMAC secret, so this hash is unkeyed; its
// length prefixes make (tenant, cred) pairs unambiguous, and the cache never
// holds a credential in clear. It is not a verifier: a cache entry under it
// was written only after the control plane accepted cred. Tenants are hashed
// as given, not canonicalized.
func CacheKey(tenant credential.Tenant, cred string) [32]byte {
	n := len(cacheKeyLabel) + 8 + len(tenant) + 8 + len(cred)
	if n <= hashBufLen {
		var buf [hashBufLen]byte
		i := copy(buf[:], cacheKeyLabel)
		binary.BigEndian.PutUint64(buf[i:], uint64(len(tenant)))
		i += 8
		i += copy(buf[i:], tenant)
		binary.BigEndian.PutUint64(buf[i:], uint64(len(cred)))
		i += 8
		i += copy(buf[i:], cred)
		return sha256.Sum256(buf[:i])
	}
	h := sha256.New()
	var l [8]byte
	h.Write([]byte(cacheKeyLabel))
	binary.BigEndian.PutUint64(l[:], uint64(len(tenant)))
	h.Write(l[:])
	h.Write([]byte(tenant))
	binary.BigEndian.PutUint64(l[:], uint64(len(cred)))
	h.Write(l[:])
	h.Write([]byte(cred))
	var out [32]byte
	h.Sum(out[:0])
	return out
}
