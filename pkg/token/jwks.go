package token

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// jwksDoc is a JWK set, bare (RFC 7517) or wrapped the way Talos's
// GET /v2alpha1/derivedKeys/jwks.json answers.
type jwksDoc struct {
	Keys []json.RawMessage `json:"keys"`
	JWKS *struct {
		Keys []json.RawMessage `json:"keys"`
	} `json:"jwks"`
}

func decodeJWKS(data []byte) ([]jwk, error) {
	var doc jwksDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, invalid("JWKS is not valid JSON")
	}
	raw := doc.Keys
	if raw == nil && doc.JWKS != nil {
		raw = doc.JWKS.Keys
	}
	if raw == nil {
		return nil, invalid(`JWKS has no "keys" member`)
	}
	out := make([]jwk, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, invalid(fmt.Sprintf("JWKS key %d is not a JWK", i))
		}
	}
	return out, nil
}

// ParseJWKS parses a JWK set holding private keys (Ed25519, RSA of at least
// MinRSABits, EC P-256), the payload of Talos's signing_keys.urls base64://
// entries. The algorithm is inferred from the key type (Ed25519: EdDSA, RSA:
// RS256, P-256: ES256) and overrides any "alg" member, as in Talos. The ID is
// the "kid" member, or the RFC 7638 thumbprint when there is none. NotAfter is
// zero: the caller decides which keys are retired.
//
// A malformed set, a public-only or unsupported key, a "use" other than "sig",
// a duplicate kid or an empty set is ErrInvalidArgument; the error never
// carries key material. The returned slice is the caller's.
func ParseJWKS(data []byte) ([]SigningKey, error) {
	jwks, err := decodeJWKS(data)
	if err != nil {
		return nil, err
	}
	if len(jwks) == 0 {
		return nil, invalid("JWKS holds no keys")
	}
	keys := make([]SigningKey, 0, len(jwks))
	for i := range jwks {
		j := &jwks[i]
		if j.Use != "" && j.Use != "sig" {
			return nil, invalid(fmt.Sprintf(`JWKS key %d: "use" must be "sig"`, i))
		}
		key, err := j.decodePrivate()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		alg, err := algorithmOf(key.Public())
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		kid := j.Kid
		if kid == "" {
			kid = j.thumbprint()
		}
		if slices.ContainsFunc(keys, func(k SigningKey) bool { return k.ID == kid }) {
			return nil, invalid(fmt.Sprintf("JWKS key %d: duplicate kid", i))
		}
		keys = append(keys, SigningKey{ID: kid, Algorithm: alg, Key: key})
	}
	return keys, nil
}

// MarshalJWKS encodes keys as an RFC 7517 set {"keys":[...]}, each key with
// "use":"sig", "alg" and "kid". With private false only the public members
// are written; with private true the output is secret and ParseJWKS reads it
// back. A key that NewSigner would reject is ErrInvalidArgument.
func MarshalJWKS(keys []SigningKey, private bool) ([]byte, error) {
	out := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for i, k := range keys {
		if err := k.check(); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		var (
			j   jwk
			err error
		)
		if private {
			j, err = privateJWK(k.Key)
		} else {
			j, err = publicJWK(k.Key.Public())
		}
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		j.Use, j.Alg, j.Kid = "sig", k.Algorithm, k.ID
		if j.Kid == "" {
			j.Kid = j.thumbprint()
		}
		out.Keys = append(out.Keys, j)
	}
	return json.Marshal(out)
}

// check validates a signing key: a supported private key whose type fits the
// algorithm.
func (k *SigningKey) check() error {
	if k.Key == nil {
		return invalid("signing key has no key")
	}
	alg, err := algorithmOf(k.Key.Public())
	if err != nil {
		return err
	}
	if alg != k.Algorithm {
		return invalid(fmt.Sprintf("a %s key cannot sign %q", alg, k.Algorithm))
	}
	if _, err := privateJWK(k.Key); err != nil {
		return err
	}
	return nil
}

// KeySet is a set of public JWT verification keys by kid: all a verifier
// needs. It is immutable and safe for concurrent use; the zero value and nil
// hold no keys.
type KeySet struct {
	keys map[string]verificationKey
	// methods are the algorithms present, for jwt.WithValidMethods; never
	// nil, since a nil list disables that check.
	methods []string
}

type verificationKey struct {
	alg string
	key crypto.PublicKey
}

// NewKeySet returns a KeySet of public keys by kid: ed25519.PublicKey (EdDSA),
// *rsa.PublicKey of at least MinRSABits (RS256) or *ecdsa.PublicKey on P-256
// (ES256). An empty kid or another key type is ErrInvalidArgument. The map is
// copied.
func NewKeySet(pub map[string]crypto.PublicKey) (*KeySet, error) {
	ks := newKeySet(len(pub))
	for kid, k := range pub {
		if kid == "" {
			return nil, invalid("empty kid")
		}
		alg, err := algorithmOf(k)
		if err != nil {
			return nil, err
		}
		ks.add(kid, alg, k)
	}
	return ks, nil
}

func newKeySet(n int) *KeySet {
	return &KeySet{keys: make(map[string]verificationKey, n), methods: []string{}}
}

func (ks *KeySet) add(kid, alg string, key crypto.PublicKey) {
	ks.keys[kid] = verificationKey{alg: alg, key: key}
	if !slices.Contains(ks.methods, alg) {
		ks.methods = append(ks.methods, alg)
	}
}

// Has reports whether kid is in the set.
func (ks *KeySet) Has(kid string) bool {
	if ks == nil {
		return false
	}
	_, ok := ks.keys[kid]
	return ok
}

// Len returns the number of keys in the set.
func (ks *KeySet) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.keys)
}

// ParsePublicJWKS parses a public JWK set, bare ({"keys":[...]}, as served at
// /.well-known/jwks.json) or wrapped ({"jwks":{"keys":[...]}}, as served at
// /v2alpha1/derivedKeys/jwks.json), into a KeySet. As RFC 7517 asks, keys the
// package cannot use are skipped: other key types and curves, RSA keys under
// MinRSABits, a "use" other than "sig", and an "alg" that does not fit the key
// type (so a symmetric key can never enter the set). Private members are
// ignored. A malformed document, a malformed key of a supported type or a
// duplicate kid is ErrInvalidArgument.
func ParsePublicJWKS(data []byte) (*KeySet, error) {
	jwks, err := decodeJWKS(data)
	if err != nil {
		return nil, err
	}
	ks := newKeySet(len(jwks))
	for i := range jwks {
		j := &jwks[i]
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		pub, err := j.decodePublic()
		if errors.Is(err, errUnsupported) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		alg, err := algorithmOf(pub)
		if err != nil || (j.Alg != "" && j.Alg != alg) {
			continue
		}
		kid := j.Kid
		if kid == "" {
			kid = j.thumbprint()
		}
		if _, dup := ks.keys[kid]; dup {
			return nil, invalid(fmt.Sprintf("JWKS key %d: duplicate kid", i))
		}
		ks.add(kid, alg, pub)
	}
	return ks, nil
}

// key is the jwt.Keyfunc of the set: the public key of the token's kid,
// provided the token's alg is that key's algorithm and the header carries
// nothing the package does not understand. Its errors are the package's
// SIGNATURE_INVALID errors, which VerifyJWT passes through.
func (ks *KeySet) key(t *jwt.Token) (any, error) {
	if typ, ok := t.Header["typ"]; ok {
		if s, _ := typ.(string); !strings.EqualFold(s, "JWT") {
			return nil, errHeader
		}
	}
	if _, ok := t.Header["crit"]; ok { // RFC 7515 4.1.11: no extension is understood
		return nil, errHeader
	}
	kid, _ := t.Header["kid"].(string)
	k, ok := ks.keys[kid]
	if !ok {
		return nil, errUnknownKey
	}
	if t.Method.Alg() != k.alg {
		return nil, errAlgorithm
	}
	return k.key, nil
}
