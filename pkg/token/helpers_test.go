package token_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	tenant  credential.Tenant = "11111111-2222-4333-8444-555555555555"
	issuer                    = "https://talos.example.com"
	prefix                    = "mc"
	keyID   credential.KeyID  = "0b7e1c7a-3f0e-4d4a-9d43-2f1c2b3a4d5e"
	skew                      = 5 * time.Minute
	tokenID                   = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
)

var algorithms = []string{token.EdDSA, token.RS256, token.ES256}

// claims returns a full set of claims valid at now.
func claims() token.Claims {
	return token.Claims{
		ID:           tokenID,
		Subject:      keyID,
		Issuer:       issuer,
		IssuedAt:     now,
		NotBefore:    now,
		Expiry:       now.Add(time.Hour),
		ActorID:      "user-42",
		Scopes:       []string{"keys:read", "keys:write", "billing:read"},
		Metadata:     json.RawMessage(`{"plan":"pro","region":"eu"}`),
		Tenant:       tenant,
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		Visibility:   credential.VisibilitySecret,
		Custom:       map[string]any{"team": "platform", "level": float64(3)},
	}
}

// opts returns verify options that the claims above satisfy.
func opts() token.VerifyOptions {
	return token.VerifyOptions{
		Now:       now,
		ClockSkew: skew,
		Issuers:   []string{issuer},
		Tenant:    tenant,
		ClientIP:  netip.MustParseAddr("10.1.2.3"),
	}
}

// Fixed signing keys, so that fuzz corpora stay meaningful across runs.
var (
	edKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	// edKeyOther is a key nobody publishes.
	edKeyOther = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	ecKey      = func() *ecdsa.PrivateKey {
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{9}, 32))
		if err != nil {
			panic(err)
		}
		return k
	}()
	// rsaKey is generated once per test binary: RSA keys take a while.
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := token.GenerateKey(token.RS256, nil)
		if err != nil {
			panic(err)
		}
		return k.Key.(*rsa.PrivateKey)
	})
)

// signingKey returns the fixed key of alg with its thumbprint as ID.
func signingKey(t testing.TB, alg string) token.SigningKey {
	t.Helper()
	k := token.SigningKey{Algorithm: alg}
	switch alg {
	case token.EdDSA:
		k.Key = edKey
	case token.RS256:
		k.Key = rsaKey()
	case token.ES256:
		k.Key = ecKey
	}
	id, err := token.Thumbprint(k.Key.Public())
	if err != nil {
		t.Fatalf("Thumbprint: %v", err)
	}
	k.ID = id
	return k
}

func mustSigner(t testing.TB, keys []token.SigningKey, current string) *token.Signer {
	t.Helper()
	s, err := token.NewSigner(keys, current)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func newTestSigner(t testing.TB, alg string) *token.Signer {
	t.Helper()
	return mustSigner(t, []token.SigningKey{signingKey(t, alg)}, "")
}

func mustSign(t testing.TB, s *token.Signer, c token.Claims) string {
	t.Helper()
	tok, err := s.SignJWT(c)
	if err != nil {
		t.Fatalf("SignJWT: %v", err)
	}
	return tok
}

// rootKey is the macaroon root key of the tests.
var rootKey = token.MacaroonRootKey(bytes.Repeat([]byte("s"), 32))

func mustMint(t testing.TB, c token.Claims) string {
	t.Helper()
	tok, err := token.MintMacaroon(rootKey, prefix, c)
	if err != nil {
		t.Fatalf("MintMacaroon: %v", err)
	}
	return tok
}

func mustAttenuate(t testing.TB, tok string, cs ...token.Caveat) string {
	t.Helper()
	out, err := token.Attenuate(tok, cs...)
	if err != nil {
		t.Fatalf("Attenuate: %v", err)
	}
	return out
}

// signRaw signs an arbitrary header and payload with golang-jwt, bypassing
// the Signer's checks, to forge tokens the Signer would never produce.
func signRaw(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, payload map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	sig, err := method.Sign(input, key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// payload returns the JWT payload of the claims above, as the Signer writes it.
func payload() map[string]any {
	return map[string]any{
		"jti": tokenID, "sub": string(keyID), "akid": string(keyID), "pid": string(keyID),
		"iss": issuer, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"nid": string(tenant), "tty": "derived", "scp": []string{"keys:read"},
	}
}

// wantErr asserts that err wraps sentinel and, when reason is set, carries
// that reason.
func wantErr(t testing.TB, err, sentinel error, reason string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	if reason == "" {
		return
	}
	var ce *credential.Error
	if !errors.As(err, &ce) || ce.Reason != reason {
		t.Fatalf("err = %#v, want reason %s", err, reason)
	}
}

// signatureInvalid is the sentinel and reason of a forged or misdirected token.
const signatureInvalid = "SIGNATURE_INVALID"
