package apikey

import "github.com/google/uuid"

const hexDigits = "0123456789abcdef"

// uuidLen is the length of a canonical UUID: 8-4-4-4-12 lowercase hex digits.
const uuidLen = 36

// formatUUID writes u in canonical form (lowercase, hyphenated) to dst.
func formatUUID(dst *[uuidLen]byte, u *[16]byte) {
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hexDigits[b>>4]
		dst[j+1] = hexDigits[b&0x0f]
		j += 2
	}
}

// parseCanonicalUUID parses s when it is a UUID in canonical form and nothing
// else: 36 bytes, lowercase hex, hyphens at 8, 13, 18 and 23. It accepts any
// version and variant.
func parseCanonicalUUID[T string | []byte](s T) (u [16]byte, ok bool) {
	if len(s) != uuidLen || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := range u {
		if j == 8 || j == 13 || j == 18 || j == 23 {
			j++
		}
		hi, ok1 := lowerHex(s[j])
		lo, ok2 := lowerHex(s[j+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[i] = hi<<4 | lo
		j += 2
	}
	return u, true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// isV4 reports whether u carries the version 4 and RFC 9562 variant bits that
// NewV2 sets.
func isV4(u *[16]byte) bool {
	return u[6]>>4 == 4 && u[8]>>6 == 0b10
}

// canonicalTenant returns the bytes that stand for the tenant in imported-key
// hashes: the canonical string form of the UUID when the tenant parses as one
// (in any form google/uuid accepts: upper case, braces, urn:uuid:, no hyphens),
// else the tenant string unchanged. It allocates only for a UUID that is not
// already canonical.
func canonicalTenant(tenant string) string {
	if _, ok := parseCanonicalUUID(tenant); ok {
		return tenant
	}
	u, err := uuid.Parse(tenant)
	if err != nil {
		return tenant
	}
	return u.String()
}
