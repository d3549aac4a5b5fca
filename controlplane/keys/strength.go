package keys

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// Defaults of ImportPolicy.
const (
	DefaultMinImportLength      = 16
	DefaultMinImportEntropyBits = 64
)

// ImportPolicy is the minimum strength of an imported key
// (credentials.imported_keys). An imported key is looked up by its hash, so
// the key itself is all an attacker has to guess: online through verify and
// self-revoke, or offline from a database dump when the hash is unkeyed.
type ImportPolicy struct {
	// MinLength is in characters; zero means DefaultMinImportLength.
	MinLength int
	// MinEntropyBits is the least estimateBits must give; zero means
	// DefaultMinImportEntropyBits.
	MinEntropyBits int
	// AllowWeak accepts keys below both minimums, as Ory Talos does.
	AllowWeak bool
}

func (p ImportPolicy) withDefaults() ImportPolicy {
	if p.MinLength <= 0 {
		p.MinLength = DefaultMinImportLength
	}
	if p.MinEntropyBits <= 0 {
		p.MinEntropyBits = DefaultMinImportEntropyBits
	}
	return p
}

// check refuses raw when it is shorter or guessable more easily than p
// allows. The message names the rule, never the key.
func (p ImportPolicy) check(raw string) error {
	if p.AllowWeak {
		return nil
	}
	if n := utf8.RuneCountInString(raw); n < p.MinLength {
		return weakKey(fmt.Sprintf("raw_key is too short: imported keys need at least %d characters", p.MinLength))
	}
	if bits := estimateBits(raw); bits < float64(p.MinEntropyBits) {
		return weakKey(fmt.Sprintf("raw_key is too easy to guess: imported keys need an estimated %d bits of entropy", p.MinEntropyBits))
	}
	return nil
}

func weakKey(msg string) error {
	return invalidf("%s (credentials.imported_keys.allow_weak accepts weaker keys)", msg)
}

// estimateBits is an upper bound on the entropy of s, cheap and honest about
// what it cannot see:
//
//	bits = counted characters × log2(size of the character classes s uses)
//
// The classes are digits (10), lower-case (26) and upper-case (26) ASCII
// letters, other printable ASCII (33), and anything else (128). A character
// is not counted when it continues a run of three that repeat or step by one
// ("aaa", "123", "cba"): such runs are what short human-made keys are built
// of. Dictionary words, dates and keyboard walks are not detected, so a key
// can pass and still be weak; a random key of the same length and alphabet
// scores close to its true entropy (16 random hex digits: ~82 "bits" for a
// true 64, because the classes are wider than the alphabet).
func estimateBits(s string) float64 {
	var digit, lower, upper, punct, other bool
	counted := 0
	var p1, p2 rune = -1, -1 // the two previous characters
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= 0x20 && r < 0x7f:
			punct = true
		default:
			other = true
		}
		if d := r - p1; p2 < 0 || p1-p2 != d || d < -1 || d > 1 {
			counted++
		}
		p2, p1 = p1, r
	}
	size := 0
	for _, c := range []struct {
		used bool
		n    int
	}{{digit, 10}, {lower, 26}, {upper, 26}, {punct, 33}, {other, 128}} {
		if c.used {
			size += c.n
		}
	}
	if size == 0 {
		return 0
	}
	return float64(counted) * math.Log2(float64(size))
}
