package apikey_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"testing"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func BenchmarkParseV2(b *testing.B) {
	tok := mustNewV2(b, "talos").Token
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseV1(b *testing.B) {
	tok := mustNewV1(b, mustSecretSet(b, secret('a')), "talos")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse_Garbage is the cost of rejecting a v2-shaped key with a bad
// checksum, the sidecar's local check.
func BenchmarkParse_Garbage(b *testing.B) {
	tok := mustNewV2(b, "talos").Token
	tok = tok[:len(tok)-6] + "111111"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.Parse(tok); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkLooksIssued(b *testing.B) {
	s := mustSecretSet(b, secret('a'))
	for name, tok := range map[string]string{
		"v2":       mustNewV2(b, "talos").Token,
		"v1":       mustNewV1(b, s, "talos"),
		"imported": "sk_live_51H8sQ2ExampleExampleExampleExample00aBcDeF",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				apikey.LooksIssued(tok)
			}
		})
	}
}

func BenchmarkNewV2(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.NewV2("talos", rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatchSecret runs with one secret and with the current plus two
// retired ones; "naive" is the same work with hmac.New per call, for the
// ratio the pooled hashers buy.
func BenchmarkMatchSecret(b *testing.B) {
	iss := mustNewV2(b, "talos")
	for _, n := range []int{1, 3} {
		var retired []apikey.Secret
		for i := 1; i < n; i++ {
			retired = append(retired, apikey.Secret{Value: secret(byte('a' + i))})
		}
		s := mustSecretSet(b, secret('a'), retired...)
		stored := s.HashSecret(iss.KeyID, iss.Secret)
		b.Run(label("pooled", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !s.MatchSecret(iss.KeyID, iss.Secret, stored, now) {
					b.Fatal("no match")
				}
			}
		})
		keys := [][]byte{secret('a')}
		for _, r := range retired {
			keys = append(keys, r.Value)
		}
		b.Run(label("naive", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !naiveMatch(keys, iss.KeyID, iss.Secret, stored) {
					b.Fatal("no match")
				}
			}
		})
	}
}

func naiveMatch(keys [][]byte, id credential.KeyID, secret, stored []byte) bool {
	match := 0
	for _, k := range keys {
		h := hmac.New(sha256.New, k)
		h.Write([]byte("talos/apikey/v2/secret-hash\x00"))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(id))))
		h.Write([]byte(id))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(secret))))
		h.Write(secret)
		match |= subtle.ConstantTimeCompare(h.Sum(nil), stored)
	}
	return match == 1
}

func label(kind string, secrets int) string {
	if secrets == 1 {
		return kind + "/1secret"
	}
	return kind + "/3secrets"
}

func BenchmarkCheckV1(b *testing.B) {
	for _, n := range []int{1, 3} {
		var retired []apikey.Secret
		for i := 1; i < n; i++ {
			retired = append(retired, apikey.Secret{Value: secret(byte('a' + i))})
		}
		s := mustSecretSet(b, secret('a'), retired...)
		tok := mustNewV1(b, s, "talos")
		b.Run(label("pooled", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !s.CheckV1(tok, now) {
					b.Fatal("no match")
				}
			}
		})
	}
}

func BenchmarkHashSecret(b *testing.B) {
	s := mustSecretSet(b, secret('a'))
	iss := mustNewV2(b, "talos")
	b.ReportAllocs()
	for b.Loop() {
		s.HashSecret(iss.KeyID, iss.Secret)
	}
}

func BenchmarkImportedID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		apikey.ImportedID(credential.DefaultTenant, "sk_live_51H8sQ2ExampleExampleExampleExample00aBcDeF")
	}
}

func BenchmarkImportedIDsKeyed(b *testing.B) {
	s := mustSecretSet(b, secret('a'))
	b.ReportAllocs()
	for b.Loop() {
		s.ImportedIDsKeyed(credential.DefaultTenant, "sk_live_51H8sQ2ExampleExampleExampleExample00aBcDeF", now)
	}
}

func BenchmarkCacheKey(b *testing.B) {
	tok := mustNewV2(b, "talos").Token
	b.ReportAllocs()
	for b.Loop() {
		apikey.CacheKey(credential.DefaultTenant, tok)
	}
}
