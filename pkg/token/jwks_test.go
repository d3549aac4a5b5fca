package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		alg  string
		opts []token.GenerateOption
		want func(crypto.Signer) bool
	}{
		{token.EdDSA, nil, func(k crypto.Signer) bool { _, ok := k.(ed25519.PrivateKey); return ok }},
		{token.RS256, nil, func(k crypto.Signer) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 2048 }},
		{token.RS256, []token.GenerateOption{token.RSABits(3072)}, func(k crypto.Signer) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 3072 }},
		{token.ES256, nil, func(k crypto.Signer) bool {
			e, ok := k.(*ecdsa.PrivateKey)
			return ok && e.Curve.Params().Name == "P-256"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			t.Parallel()
			k, err := token.GenerateKey(tt.alg, nil, tt.opts...)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if k.Algorithm != tt.alg || !tt.want(k.Key) || !k.NotAfter.IsZero() {
				t.Fatalf("GenerateKey(%s) = %+v", tt.alg, k)
			}
			// The kid is the RFC 7638 thumbprint, as an independent
			// implementation computes it.
			pub, err := jwk.Import(k.Key.Public())
			if err != nil {
				t.Fatalf("jwk.Import: %v", err)
			}
			tp, err := pub.Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatalf("Thumbprint: %v", err)
			}
			if want := base64.RawURLEncoding.EncodeToString(tp); k.ID != want {
				t.Errorf("kid = %s, want thumbprint %s", k.ID, want)
			}
		})
	}
	for name, f := range map[string]func() (token.SigningKey, error){
		"unknown algorithm": func() (token.SigningKey, error) { return token.GenerateKey("HS256", nil) },
		"lower case":        func() (token.SigningKey, error) { return token.GenerateKey("eddsa", nil) },
		"1024-bit RSA":      func() (token.SigningKey, error) { return token.GenerateKey(token.RS256, nil, token.RSABits(1024)) },
	} {
		_, err := f()
		if err == nil {
			t.Errorf("%s: GenerateKey succeeded", name)
			continue
		}
		wantErr(t, err, credential.ErrInvalidArgument, "")
	}
}

// TestThumbprint_RFCVectors checks the thumbprints of RFC 7638 section 3.1
// (RSA) and RFC 8037 appendix A.3 (Ed25519).
func TestThumbprint_RFCVectors(t *testing.T) {
	t.Parallel()
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	got, err := token.Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("RSA thumbprint = %s, want %s", got, want)
	}

	keys, err := token.ParseJWKS([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519",
		"d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	if err != nil {
		t.Fatalf("ParseJWKS: %v", err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; keys[0].ID != want || keys[0].Algorithm != token.EdDSA {
		t.Errorf("RFC 8037 key = %s %s, want %s EdDSA", keys[0].ID, keys[0].Algorithm, want)
	}
}

func TestJWKS_RoundTrip(t *testing.T) {
	t.Parallel()
	keys := []token.SigningKey{signingKey(t, token.EdDSA), signingKey(t, token.RS256), signingKey(t, token.ES256)}
	keys[1].ID = "custom-kid"

	priv, err := token.MarshalJWKS(keys, true)
	if err != nil {
		t.Fatalf("MarshalJWKS(private): %v", err)
	}
	got, err := token.ParseJWKS(priv)
	if err != nil {
		t.Fatalf("ParseJWKS: %v", err)
	}
	if diff := cmp.Diff(keys, got, cmp.Comparer(func(a, b crypto.Signer) bool {
		return a.(interface{ Equal(crypto.PrivateKey) bool }).Equal(b)
	})); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}

	pub, err := token.MarshalJWKS(keys, false)
	if err != nil {
		t.Fatalf("MarshalJWKS(public): %v", err)
	}
	var doc struct{ Keys []map[string]string }
	if err := json.Unmarshal(pub, &doc); err != nil {
		t.Fatal(err)
	}
	for i, k := range doc.Keys {
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[m]; ok {
				t.Errorf("public key %d has private member %q", i, m)
			}
		}
		if k["use"] != "sig" || k["alg"] != keys[i].Algorithm || k["kid"] != keys[i].ID {
			t.Errorf("public key %d = %v", i, k)
		}
	}
	if _, err := token.ParseJWKS(pub); err == nil {
		t.Error("ParseJWKS read a public-only set as signing keys")
	}

	// Every key of the public set verifies what its private half signs.
	ks, err := token.ParsePublicJWKS(pub)
	if err != nil {
		t.Fatalf("ParsePublicJWKS: %v", err)
	}
	for _, k := range keys {
		tok := mustSign(t, mustSigner(t, []token.SigningKey{k}, ""), claims())
		if _, err := token.VerifyJWT(tok, ks, opts()); err != nil {
			t.Errorf("%s: VerifyJWT: %v", k.Algorithm, err)
		}
	}
}

func TestParseJWKS_Invalid(t *testing.T) {
	t.Parallel()
	ed := `{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`
	tests := []struct{ name, doc string }{
		{"not JSON", `{`},
		{"no keys member", `{}`},
		{"empty", `{"keys":[]}`},
		{"key not an object", `{"keys":[1]}`},
		{"public only", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`},
		{"private key of another public key", `{"keys":[{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"AAAAAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`},
		{"symmetric key", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`},
		{"X25519", `{"keys":[{"kty":"OKP","crv":"X25519","x":"AAAA","d":"AAAA"}]}`},
		{"P-384", `{"keys":[{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA","d":"AAAA"}]}`},
		{"encryption key", `{"keys":[` + strings.Replace(ed, `{`, `{"use":"enc",`, 1) + `]}`},
		{"duplicate kid", `{"keys":[` + ed + `,` + ed + `]}`},
		{"bad base64", `{"keys":[{"kty":"OKP","crv":"Ed25519","d":"!!","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`},
		{"RSA without primes", `{"keys":[{"kty":"RSA","n":"` + rsaN(t) + `","e":"AQAB","d":"AQAB"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := token.ParseJWKS([]byte(tt.doc))
			wantErr(t, err, credential.ErrInvalidArgument, "")
			if strings.Contains(err.Error(), "nWGxne") {
				t.Errorf("error %q carries key material", err)
			}
		})
	}
}

func rsaN(t *testing.T) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString(rsaKey().N.Bytes())
}

func TestParsePublicJWKS(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	tok := mustSign(t, s, claims())
	bare, err := json.Marshal(s.PublicJWKS(now))
	if err != nil {
		t.Fatal(err)
	}
	wrapped := `{"jwks":` + string(bare) + `}`
	// Keys the package cannot use are skipped, as RFC 7517 asks.
	extra := strings.Replace(string(bare), `"keys":[`, `"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"},`+
		`{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"},{"kty":"RSA","n":"AQAB","e":"AQAB","use":"enc"},`, 1)
	for name, doc := range map[string]string{"bare": string(bare), "wrapped": wrapped, "with unusable keys": extra} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ks, err := token.ParsePublicJWKS([]byte(doc))
			if err != nil {
				t.Fatalf("ParsePublicJWKS: %v", err)
			}
			if ks.Len() != 1 {
				t.Errorf("Len = %d, want 1", ks.Len())
			}
			if _, err := token.VerifyJWT(tok, ks, opts()); err != nil {
				t.Errorf("VerifyJWT: %v", err)
			}
		})
	}
	for name, doc := range map[string]string{
		"not JSON":      `[`,
		"no keys":       `{"jwks":{}}`,
		"malformed key": `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"short"}]}`,
		"duplicate kid": `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
	} {
		_, err := token.ParsePublicJWKS([]byte(doc))
		if err == nil {
			t.Errorf("%s: ParsePublicJWKS succeeded", name)
			continue
		}
		wantErr(t, err, credential.ErrInvalidArgument, "")
	}
}

// TestParsePublicJWKS_AlgMismatch: a key whose "alg" does not fit its type is
// skipped, so a JWKS cannot smuggle in an RSA key for HS256.
func TestParsePublicJWKS_AlgMismatch(t *testing.T) {
	t.Parallel()
	k := signingKey(t, token.RS256)
	doc := `{"keys":[{"kty":"RSA","kid":"` + k.ID + `","alg":"HS256","n":"` + rsaN(t) + `","e":"AQAB"}]}`
	ks, err := token.ParsePublicJWKS([]byte(doc))
	if err != nil {
		t.Fatalf("ParsePublicJWKS: %v", err)
	}
	if ks.Len() != 0 {
		t.Errorf("Len = %d, want 0", ks.Len())
	}
}

// TestSigner_Rotation: a retired key stops signing at once, stays published
// and accepted until its NotAfter, and is gone after.
func TestSigner_Rotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := signingKey(t, token.RS256), signingKey(t, token.EdDSA)
	before := mustSigner(t, []token.SigningKey{oldKey}, "")
	oldTok := mustSign(t, before, claims())

	retireAt := now.Add(2 * time.Hour)
	oldKey.NotAfter = retireAt
	after := mustSigner(t, []token.SigningKey{oldKey, newKey}, "") // the first unretired key is current
	if after.CurrentKID() != newKey.ID {
		t.Fatalf("CurrentKID = %s, want %s", after.CurrentKID(), newKey.ID)
	}
	newTok := mustSign(t, after, claims())
	if kidOf(t, newTok) != newKey.ID {
		t.Errorf("new token signed by %s, want %s", kidOf(t, newTok), newKey.ID)
	}

	tests := []struct {
		name     string
		at       time.Time
		wantKIDs []string
		oldValid bool
	}{
		{"before NotAfter", now, []string{newKey.ID, oldKey.ID}, true},
		{"just before NotAfter", retireAt.Add(-time.Second), []string{newKey.ID, oldKey.ID}, true},
		{"at NotAfter", retireAt, []string{newKey.ID}, false},
		{"after NotAfter", retireAt.Add(time.Hour), []string{newKey.ID}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var kids []string
			for _, k := range after.PublicJWKS(tt.at)["keys"].([]any) {
				kids = append(kids, k.(map[string]any)["kid"].(string))
			}
			if diff := cmp.Diff(tt.wantKIDs, kids); diff != "" {
				t.Errorf("published kids (-want +got):\n%s", diff)
			}
			o := opts()
			o.Now = tt.at
			o.ClockSkew = 0
			c := claims()
			c.IssuedAt, c.NotBefore, c.Expiry = tt.at.Add(-time.Minute), tt.at.Add(-time.Minute), tt.at.Add(time.Hour)
			oldTok := oldTok
			if tt.at != now {
				oldTok = mustSign(t, before, c)
			}
			_, err := token.VerifyJWT(oldTok, after.KeySet(tt.at), o)
			if tt.oldValid && err != nil {
				t.Errorf("old token: %v", err)
			}
			if !tt.oldValid {
				wantErr(t, err, credential.ErrUnauthenticated, signatureInvalid)
			}
			if _, err := token.VerifyJWT(mustSign(t, after, c), after.KeySet(tt.at), o); err != nil {
				t.Errorf("new token: %v", err)
			}
		})
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	var h map[string]any
	mustUnmarshalB64(t, strings.Split(tok, ".")[0], &h)
	return h["kid"].(string)
}

func TestNewSigner(t *testing.T) {
	t.Parallel()
	ed, es := signingKey(t, token.EdDSA), signingKey(t, token.ES256)
	s := mustSigner(t, []token.SigningKey{ed, es}, es.ID)
	if s.CurrentKID() != es.ID {
		t.Errorf("CurrentKID = %s, want %s", s.CurrentKID(), es.ID)
	}
	noID := ed
	noID.ID = ""
	if got := mustSigner(t, []token.SigningKey{noID}, "").CurrentKID(); got != ed.ID {
		t.Errorf("kid of a key without ID = %s, want the thumbprint %s", got, ed.ID)
	}

	retired := es
	retired.NotAfter = now
	tests := []struct {
		name    string
		keys    []token.SigningKey
		current string
	}{
		{"no keys", nil, ""},
		{"all retired", []token.SigningKey{retired}, ""},
		{"current retired", []token.SigningKey{ed, retired}, es.ID},
		{"unknown current", []token.SigningKey{ed}, "nope"},
		{"duplicate kid", []token.SigningKey{ed, ed}, ""},
		{"algorithm does not fit", []token.SigningKey{{ID: "x", Algorithm: token.RS256, Key: edKey}}, ""},
		{"unknown algorithm", []token.SigningKey{{ID: "x", Algorithm: "HS256", Key: edKey}}, ""},
		{"no key", []token.SigningKey{{ID: "x", Algorithm: token.EdDSA}}, ""},
		{"P-384", []token.SigningKey{{ID: "x", Algorithm: token.ES256, Key: mustP384(t)}}, ""},
		{"1024-bit RSA", []token.SigningKey{{ID: "x", Algorithm: token.RS256, Key: mustRSA1024(t)}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := token.NewSigner(tt.keys, tt.current)
			wantErr(t, err, credential.ErrInvalidArgument, "")
		})
	}
}

// TestSigner_PublicJWKS checks that the document is generic JSON that
// structpb accepts and that it matches MarshalJWKS.
func TestSigner_PublicJWKS(t *testing.T) {
	t.Parallel()
	keys := []token.SigningKey{signingKey(t, token.EdDSA), signingKey(t, token.RS256), signingKey(t, token.ES256)}
	s := mustSigner(t, keys, "")
	doc := s.PublicJWKS(now)
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case string:
			return true
		case []any:
			for _, x := range v {
				if !walk(x) {
					return false
				}
			}
			return true
		case map[string]any:
			for _, x := range v {
				if !walk(x) {
					return false
				}
			}
			return true
		}
		return false
	}
	if !walk(doc) {
		t.Fatalf("PublicJWKS is not generic JSON: %#v", doc)
	}
	got, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want, err := token.MarshalJWKS(keys, false)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("PublicJWKS vs MarshalJWKS (-want +got):\n%s", diff)
	}
	// The result is the caller's: changing it changes no later answer.
	doc["keys"].([]any)[0].(map[string]any)["kid"] = "changed"
	if again := s.PublicJWKS(now); again["keys"].([]any)[0].(map[string]any)["kid"] == "changed" {
		t.Error("PublicJWKS shares its maps")
	}
}
