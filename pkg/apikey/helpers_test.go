package apikey_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/apikey"
)

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// now is the fixed clock of these tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// secret returns a 32-byte test secret filled with c.
func secret(c byte) []byte { return bytes.Repeat([]byte{c}, 32) }

func mustSecretSet(t testing.TB, current []byte, retired ...apikey.Secret) *apikey.SecretSet {
	t.Helper()
	s, err := apikey.NewSecretSet(current, retired...)
	if err != nil {
		t.Fatalf("NewSecretSet: %v", err)
	}
	return s
}

func mustNewV2(t testing.TB, prefix string) apikey.Issued {
	t.Helper()
	iss, err := apikey.NewV2(prefix, rand.Reader)
	if err != nil {
		t.Fatalf("NewV2(%q): %v", prefix, err)
	}
	return iss
}

func mustNewV1(t testing.TB, s *apikey.SecretSet, prefix string) string {
	t.Helper()
	iss := mustNewV2(t, "x") // a fresh UUIDv4
	tok, err := apikey.NewV1(s, prefix, iss.KeyID, now)
	if err != nil {
		t.Fatalf("NewV1(%q): %v", prefix, err)
	}
	return tok
}

// encodeV2 is an independent implementation of the documented v2 encoding:
// math/big instead of the package's fixed-width arithmetic.
func encodeV2(prefix string, raw [48]byte) string {
	var sb strings.Builder
	sb.WriteString(prefix + "_v2_")
	for i := 0; i < 48; i += 8 {
		sb.WriteString(b58Fixed(new(big.Int).SetBytes(raw[i:i+8]), 11))
	}
	text := sb.String()
	return text + b58Fixed(big.NewInt(int64(crc32.ChecksumIEEE([]byte(text)))), 6)
}

// b58Fixed writes v as exactly width base58 digits, most significant first.
func b58Fixed(v *big.Int, width int) string {
	out := make([]byte, width)
	v = new(big.Int).Set(v)
	m := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		v.DivMod(v, big.NewInt(58), m)
		out[i] = b58Alphabet[m.Int64()]
	}
	return string(out)
}

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

func crc32Big(text string) *big.Int {
	return big.NewInt(int64(crc32.ChecksumIEEE([]byte(text))))
}
