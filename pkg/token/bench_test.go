package token_test

import (
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/token"
)

func benchmarkSignJWT(b *testing.B, alg string) {
	s := newTestSigner(b, alg)
	c := claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignJWT(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJWT_EdDSA(b *testing.B) { benchmarkSignJWT(b, token.EdDSA) }
func BenchmarkSignJWT_RS256(b *testing.B) { benchmarkSignJWT(b, token.RS256) }
func BenchmarkSignJWT_ES256(b *testing.B) { benchmarkSignJWT(b, token.ES256) }

func benchmarkVerifyJWT(b *testing.B, alg string) {
	s := newTestSigner(b, alg)
	tok := mustSign(b, s, claims())
	ks, o := s.KeySet(now), opts()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.VerifyJWT(tok, ks, o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyJWT_EdDSA(b *testing.B) { benchmarkVerifyJWT(b, token.EdDSA) }
func BenchmarkVerifyJWT_RS256(b *testing.B) { benchmarkVerifyJWT(b, token.RS256) }
func BenchmarkVerifyJWT_ES256(b *testing.B) { benchmarkVerifyJWT(b, token.ES256) }

// BenchmarkVerifyJWT_Forged is the cost of rejecting a token with a bad
// signature.
func BenchmarkVerifyJWT_Forged(b *testing.B) {
	s := newTestSigner(b, token.EdDSA)
	tok := mustSign(b, s, claims())
	tok = tok[:len(tok)-2] + "AA"
	ks, o := s.KeySet(now), opts()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.VerifyJWT(tok, ks, o); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkMintMacaroon(b *testing.B) {
	c := mcClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.MintMacaroon(rootKey, prefix, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyMacaroon(b *testing.B) {
	tok := mustMint(b, mcClaims())
	keys, prefixes, o := [][]byte{rootKey}, []string{prefix}, opts()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.VerifyMacaroon(tok, keys, prefixes, o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyMacaroon_RetiredKey verifies under the second of two root
// keys, the cost during an HMAC secret rotation.
func BenchmarkVerifyMacaroon_RetiredKey(b *testing.B) {
	tok := mustMint(b, mcClaims())
	keys, prefixes, o := [][]byte{token.MacaroonRootKey([]byte("a newer secret of at least 32 bytes")), rootKey}, []string{prefix}, opts()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.VerifyMacaroon(tok, keys, prefixes, o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttenuate(b *testing.B) {
	tok := mustMint(b, mcClaims())
	cs := []token.Caveat{token.Scopes("keys:read"), token.Expires(now.Add(10 * time.Minute))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.Attenuate(tok, cs...); err != nil {
			b.Fatal(err)
		}
	}
}
