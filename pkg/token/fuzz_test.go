package token_test

import (
	"errors"
	"slices"
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
