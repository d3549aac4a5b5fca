package apikey

import "github.com/talos-project/talos/pkg/credential"

// MaxPrefixLen is the longest key prefix, as in Talos.
const MaxPrefixLen = 16

// ValidPrefix reports whether p is a valid key prefix: 1 to MaxPrefixLen
// characters from [a-zA-Z0-9_] (Talos's ^[a-zA-Z0-9_]{1,16}$). A prefix may
// contain underscores, even "_v1_" or "_v2_": parsing splits at the last
// separator.
func ValidPrefix(p string) bool {
	if len(p) == 0 || len(p) > MaxPrefixLen {
		return false
	}
	for i := range len(p) {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func errInvalidPrefixArg() error {
	return credential.Invalid("key prefix must be 1 to 16 characters from [a-zA-Z0-9_]")
}
