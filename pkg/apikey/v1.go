package apikey

import (
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
	"time"

	"github.com/mr-tron/base58"

	"github.com/talos-project/talos/pkg/credential"
)

// Layout of a Talos v1 key: {prefix}_v1_{identifier}_{checksum}.
const (
	v1Sep = "_v1_"
	// v1MaxIdentBytes is the longest decoded identifier: 19 digits of
	// seconds, ':' and a UUID.
	v1MaxIdentBytes = 19 + 1 + uuidLen
	// v1MaxIdentLen is the base58 length of v1MaxIdentBytes bytes that start
	// with a digit (so no leading '1').
	v1MaxIdentLen = 77
	// v1MaxSumLen is the longest base58 encoding of 32 bytes.
	v1MaxSumLen = 44
	v1MaxLen    = MaxPrefixLen + len(v1Sep) + v1MaxIdentLen + 1 + v1MaxSumLen // 142
)

// NewV1 mints a Talos v1 key for id, created at created (whole seconds):
//
//	{prefix}_v1_{base58("<unix seconds>:<id>")}_{base58(HMAC-SHA256(current, "{prefix}_v1_{identifier}_"))}
//
// with the Bitcoin alphabet and the full 32-byte HMAC. id must be a canonical
// lowercase hyphenated UUID and created must not be before 1970. Nothing per
// key is stored for v1: the checksum is recomputed on every verification (see
// CheckV1), so whoever holds the current secret can mint a v1 key for any key
// ID. Prefer NewV2.
//
// It returns an error wrapping credential.ErrInvalidArgument for a bad prefix,
// id or time, or an empty set.
func NewV1(s *SecretSet, prefix string, id credential.KeyID, created time.Time) (string, error) {
	switch {
	case s == nil || len(s.keys) == 0:
		return "", credential.Invalid("no HMAC secret configured")
	case !ValidPrefix(prefix):
		return "", errInvalidPrefixArg()
	case created.Unix() < 0:
		return "", credential.Invalid("key creation time must not be before 1970")
	}
	if _, ok := parseCanonicalUUID(string(id)); !ok {
		return "", credential.Invalid("key ID must be a canonical lowercase UUID")
	}
	ident := base58.Encode([]byte(strconv.FormatInt(created.Unix(), 10) + ":" + string(id)))
	msg := prefix + v1Sep + ident + "_"

	k := s.keys[0]
	m := k.getMAC()
	m.writeString(msg)
	sum := base58.Encode(m.sum())
	k.putMAC(m)
	return msg + sum, nil
}

// splitV1 splits a v1-shaped token into prefix, identifier and checksum. It
// checks the prefix, that identifier and checksum are base58 and their lengths,
// not what they decode to. Neither base58 part can hold '_', so scanning back
// from the end finds the last "_v1_" without a substring search.
func splitV1(token string) (prefix, ident, sum string, ok bool) {
	if len(token) > v1MaxLen {
		return "", "", "", false
	}
	j := b58SuffixStart(token)
	if j == len(token) || len(token)-j > v1MaxSumLen || j == 0 || token[j-1] != '_' {
		return "", "", "", false
	}
	sum, rest := token[j:], token[:j-1]
	k := b58SuffixStart(rest)
	if k == len(rest) || len(rest)-k > v1MaxIdentLen || k < len(v1Sep)+1 || rest[k-len(v1Sep):k] != v1Sep {
		return "", "", "", false
	}
	prefix, ident = rest[:k-len(v1Sep)], rest[k:]
	if !ValidPrefix(prefix) {
		return "", "", "", false
	}
	return prefix, ident, sum, true
}

// decodeV1Ident decodes a v1 identifier into dst and checks that it reads
// "<seconds>:<uuid>": seconds in canonical decimal (no sign, no leading zero)
// that fit an int64, and a canonical lowercase UUID. It returns the seconds
// and the UUID's offset in dst. It does not allocate.
func decodeV1Ident(dst *[v1MaxIdentBytes]byte, ident string) (secs int64, idAt int, ok bool) {
	n, ok := b58Decode(dst[:], ident)
	if !ok || n < 2+uuidLen {
		return 0, 0, false
	}
	idAt = n - uuidLen
	colon := idAt - 1
	if dst[colon] != ':' {
		return 0, 0, false
	}
	digits := dst[:colon]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		d := int64(c - '0')
		if secs > (1<<63-1-d)/10 {
			return 0, 0, false
		}
		secs = secs*10 + d
	}
	if _, ok := parseCanonicalUUID(dst[idAt:n]); !ok {
		return 0, 0, false
	}
	return secs, idAt, true
}

// CheckV1 reports whether token is a v1 key whose checksum is the HMAC of its
// identifier under the current secret or a retired secret still active at now.
// It compares with crypto/subtle and always computes the HMAC under every
// active secret, so its timing tells at most how many secrets are active. It
// does not check that the identifier decodes (Parse does) and does not
// allocate.
func (s *SecretSet) CheckV1(token string, now time.Time) bool {
	if s == nil {
		return false
	}
	_, _, sum, ok := splitV1(token)
	if !ok {
		return false
	}
	var want [64]byte
	n, ok := b58Decode(want[:], sum)
	if !ok || n != sha256.Size {
		return false
	}
	msg := token[:len(token)-len(sum)]
	match := 0
	for _, k := range s.keys {
		if !k.activeAt(now) {
			continue
		}
		m := k.getMAC()
		m.writeString(msg)
		match |= subtle.ConstantTimeCompare(m.sum(), want[:sha256.Size])
		k.putMAC(m)
	}
	return match == 1
}
