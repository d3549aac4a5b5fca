package token_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// rejection reports whether err wraps one of the sentinels a verifier may
// answer for a bad token.
func rejection(err error) bool {
	for _, s := range []error{credential.ErrMalformed, credential.ErrUnauthenticated, credential.ErrExpired, credential.ErrNotFound, credential.ErrForbidden} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzVerifyJWT: VerifyJWT never panics, rejects with a verification sentinel,
// and accepts nothing but the tokens the Signer produced. The keys are fixed
// and the seeds are EdDSA tokens, whose signatures are deterministic, so every
// fuzzing process computes the same seeds (ECDSA signatures are randomized);
// the set also holds the P-256 key, so mutations reach ES256 verification.
func FuzzVerifyJWT(f *testing.F) {
	s := mustSigner(f, []token.SigningKey{signingKey(f, token.EdDSA), signingKey(f, token.ES256)}, "")
	ks := s.KeySet(now)
	minimal := claims()
	minimal.Custom, minimal.Metadata, minimal.AllowedCIDRs = nil, nil, nil
	valid := []string{mustSign(f, s, claims()), mustSign(f, s, minimal)}
	for _, tok := range valid {
		f.Add(tok)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := token.VerifyJWT(tok, ks, opts())
		if err == nil {
			if !slices.Contains(valid, tok) {
				t.Fatalf("accepted a token the signer never produced: %q", tok)
			}
			if c.Subject != keyID || c.Tenant != tenant {
				t.Fatalf("accepted with claims %+v", c)
			}
			return
		}
		if !rejection(err) {
			t.Fatalf("err = %v, want a verification sentinel", err)
		}
	})
}

// FuzzVerifyMacaroon: VerifyMacaroon (and Attenuate) never panic, reject with
// a verification sentinel, and accept nothing but the tokens minted or
// attenuated here.
func FuzzVerifyMacaroon(f *testing.F) {
	tok := mustMint(f, mcClaims())
	valid := []string{tok, mustAttenuate(f, tok, token.Scopes("keys:read"), token.Condition("method", "GET"))}
	for _, v := range valid {
		f.Add(v)
	}
	f.Add("mc_v1_")
	f.Add("mc_v1_AgETaHR0cHM6Ly9leGFtcGxlLmNvbQ")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := verifyMC(tok, opts())
		if err == nil {
			if !slices.Contains(valid, tok) {
				t.Fatalf("accepted a token never minted: %q", tok)
			}
			if c.Subject != keyID || c.Tenant != tenant {
				t.Fatalf("accepted with claims %+v", c)
			}
		} else if !rejection(err) {
			t.Fatalf("err = %v, want a verification sentinel", err)
		}
		if _, err := token.Attenuate(tok, token.Scopes("keys:read")); err != nil && !errors.Is(err, credential.ErrMalformed) &&
			!errors.Is(err, credential.ErrUnauthenticated) && !errors.Is(err, credential.ErrInvalidArgument) {
			t.Fatalf("Attenuate: err = %v", err)
		}
	})
}

// jwksSeeds are JWK sets of every shape the parsers meet: private and public
// sets of the fixed keys, the Talos-wrapped shape, and near misses.
func jwksSeeds(f *testing.F) {
	f.Helper()
	keys := []token.SigningKey{signingKey(f, token.EdDSA), signingKey(f, token.ES256)}
	for _, private := range []bool{true, false} {
		b, err := token.MarshalJWKS(keys, private)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add([]byte(`{"jwks":` + string(b) + `}`))
	}
	for _, s := range []string{
		`{"keys":[]}`,
		`{"jwks":{"keys":[]}}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}]}`,
		`{"keys":[{"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"},{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"=","y":"="}]}`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`,
		`{"keys":null}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
}

// FuzzParseJWKS: ParseJWKS (signing keys from configuration) never panics,
// fails only with ErrInvalidArgument and without echoing private members,
// and whatever it accepts is a usable, consistent key set: NewSigner takes
// it, it survives a MarshalJWKS round trip, and a token signed with its first
// key verifies against the public half parsed back by ParsePublicJWKS.
func FuzzParseJWKS(f *testing.F) {
	jwksSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := token.ParseJWKS(data)
		if err != nil {
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			var doc struct {
				Keys []struct {
					D string `json:"d"`
				} `json:"keys"`
			}
			if json.Unmarshal(data, &doc) == nil {
				for _, k := range doc.Keys {
					if len(k.D) >= 8 && strings.Contains(err.Error(), k.D) {
						t.Fatalf("the error echoes a private member: %v", err)
					}
				}
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("accepted an empty set")
		}
		s, err := token.NewSigner(keys, keys[0].ID)
		if err != nil {
			t.Fatalf("NewSigner refused parsed keys: %v", err)
		}
		b, err := token.MarshalJWKS(keys, true)
		if err != nil {
			t.Fatalf("MarshalJWKS: %v", err)
		}
		again, err := token.ParseJWKS(b)
		if err != nil || len(again) != len(keys) {
			t.Fatalf("round trip: %d keys, err %v", len(again), err)
		}
		for i := range keys {
			if again[i].ID != keys[i].ID || again[i].Algorithm != keys[i].Algorithm {
				t.Fatalf("key %d changed in the round trip", i)
			}
		}
		pub, err := token.MarshalJWKS(keys, false)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := token.ParsePublicJWKS(pub)
		if err != nil || ks.Len() != len(keys) {
			t.Fatalf("public half: %d keys, err %v", ks.Len(), err)
		}
		tok, err := s.SignJWT(claims())
		if err != nil {
			t.Fatalf("SignJWT: %v", err)
		}
		if _, err := token.VerifyJWT(tok, ks, opts()); err != nil {
			t.Fatalf("a token of a parsed key does not verify against its public half: %v", err)
		}
	})
}

// FuzzParsePublicJWKS: ParsePublicJWKS (the sidecar's reading of the control
// plane's JWKS) never panics, fails only with ErrInvalidArgument, never holds
// more keys than the document lists, and its set never accepts a token the
// fixed signer produced unless that key is in the document.
func FuzzParsePublicJWKS(f *testing.F) {
	jwksSeeds(f)
	s := mustSigner(f, []token.SigningKey{signingKey(f, token.EdDSA)}, "")
	tok := mustSign(f, s, claims())
	edPub, err := token.MarshalJWKS([]token.SigningKey{signingKey(f, token.EdDSA)}, false)
	if err != nil {
		f.Fatal(err)
	}
	var want struct {
		Keys []struct {
			X string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(edPub, &want); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := token.ParsePublicJWKS(data)
		if err != nil {
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			return
		}
		if n := strings.Count(string(data), "{") - 1; ks.Len() > n {
			t.Fatalf("%d keys from a document with at most %d objects", ks.Len(), n)
		}
		if _, err := token.VerifyJWT(tok, ks, opts()); err == nil && !strings.Contains(string(data), want.Keys[0].X) {
			t.Fatal("a set without the signing key accepted its token")
		}
	})
}
