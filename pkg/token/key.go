package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The JWT signing algorithms (JWA names).
const (
	EdDSA = "EdDSA" // Ed25519; the default
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 bits or more
	ES256 = "ES256" // ECDSA on P-256 with SHA-256
)

// MinRSABits is the smallest RSA modulus accepted for signing or verifying.
const MinRSABits = 2048

// SigningKey is one JWT signing key.
type SigningKey struct {
	// ID is the kid; GenerateKey uses the RFC 7638 thumbprint. An empty ID
	// is replaced by the thumbprint in NewSigner.
	ID string
	// Algorithm is EdDSA, RS256 or ES256, and must fit the key's type.
	Algorithm string
	// Key is an ed25519.PrivateKey, *rsa.PrivateKey or *ecdsa.PrivateKey
	// (P-256).
	Key crypto.Signer
	// NotAfter is zero for a key that may sign. A non-zero NotAfter retires
	// the key: it no longer signs, but stays published and accepted until
	// then (set it to the retirement time plus the longest token TTL plus
	// the JWKS cache time of the consumers).
	NotAfter time.Time
}

// GenerateOption tunes GenerateKey.
type GenerateOption func(*generateOptions)

type generateOptions struct{ rsaBits int }

// RSABits sets the modulus size of an RS256 key (default 2048, at least
// MinRSABits).
func RSABits(bits int) GenerateOption { return func(o *generateOptions) { o.rsaBits = bits } }

// GenerateKey generates a signing key for alg (EdDSA, RS256 or ES256) whose ID
// is its RFC 7638 thumbprint. rnd may be nil for crypto/rand; since Go 1.26
// only Ed25519 reads it, RSA and ECDSA always use a secure source. An unknown
// algorithm or a bad option is ErrInvalidArgument.
func GenerateKey(alg string, rnd io.Reader, opts ...GenerateOption) (SigningKey, error) {
	o := generateOptions{rsaBits: MinRSABits}
	for _, opt := range opts {
		opt(&o)
	}
	var (
		key crypto.Signer
		err error
	)
	switch alg {
	case EdDSA:
		_, key, err = ed25519.GenerateKey(rnd)
	case RS256:
		if o.rsaBits < MinRSABits || o.rsaBits > 16384 {
			return SigningKey{}, invalid(fmt.Sprintf("RSA keys must have %d to 16384 bits", MinRSABits))
		}
		key, err = rsa.GenerateKey(reader(rnd), o.rsaBits)
	case ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), reader(rnd))
	default:
		return SigningKey{}, invalid("algorithm must be EdDSA, RS256 or ES256")
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("token: generate %s key: %w", alg, err)
	}
	j, err := publicJWK(key.Public())
	if err != nil {
		return SigningKey{}, err
	}
	return SigningKey{ID: j.thumbprint(), Algorithm: alg, Key: key}, nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint (base64url) of a public
// key of a supported type, the kid GenerateKey assigns. Another key type is
// ErrInvalidArgument.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := publicJWK(pub)
	if err != nil {
		return "", err
	}
	return j.thumbprint(), nil
}

func reader(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// algorithmOf infers the JWA algorithm from a public key's type, and rejects
// keys the package does not use (RSA under MinRSABits, curves but P-256).
func algorithmOf(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", invalid("bad Ed25519 public key")
		}
		return EdDSA, nil
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < MinRSABits {
			return "", invalid(fmt.Sprintf("RSA keys must have at least %d bits", MinRSABits))
		}
		return RS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", invalid("ECDSA keys must use P-256")
		}
		return ES256, nil
	}
	return "", invalid(fmt.Sprintf("unsupported key type %T", pub))
}

func methodOf(alg string) jwt.SigningMethod {
	switch alg {
	case EdDSA:
		return jwt.SigningMethodEdDSA
	case RS256:
		return jwt.SigningMethodRS256
	case ES256:
		return jwt.SigningMethodES256
	}
	return nil
}

// jwk is one JSON Web Key (RFC 7517/7518/8037) of the three types the package
// uses. Byte fields are base64url without padding.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	D   string `json:"d,omitempty"`
	P   string `json:"p,omitempty"`
	Q   string `json:"q,omitempty"`
	DP  string `json:"dp,omitempty"`
	DQ  string `json:"dq,omitempty"`
	QI  string `json:"qi,omitempty"`
}

var b64 = base64.RawURLEncoding

// thumbprint is the RFC 7638 SHA-256 thumbprint of the public key, base64url.
// The members are in lexicographic order and their values need no escaping.
func (j *jwk) thumbprint() string {
	var s string
	switch j.Kty {
	case "OKP":
		s = `{"crv":"` + j.Crv + `","kty":"OKP","x":"` + j.X + `"}`
	case "RSA":
		s = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	case "EC":
		s = `{"crv":"` + j.Crv + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	}
	sum := sha256.Sum256([]byte(s))
	return b64.EncodeToString(sum[:])
}

// generic returns the public members as generic JSON, for structpb.
func (j *jwk) generic() map[string]any {
	m := map[string]any{"kty": j.Kty}
	for k, v := range map[string]string{"use": j.Use, "alg": j.Alg, "kid": j.Kid, "crv": j.Crv, "x": j.X, "y": j.Y, "n": j.N, "e": j.E} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// publicJWK encodes a public key (without use, alg and kid).
func publicJWK(pub crypto.PublicKey) (jwk, error) {
	if _, err := algorithmOf(pub); err != nil {
		return jwk{}, err
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k)}, nil
	case *rsa.PublicKey:
		return jwk{Kty: "RSA", N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			return jwk{}, invalid("bad ECDSA public key")
		}
		return jwk{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(b[1:33]), Y: b64.EncodeToString(b[33:])}, nil
	}
	return jwk{}, invalid("unsupported key type")
}

// privateJWK encodes a private key with its public members.
func privateJWK(key crypto.Signer) (jwk, error) {
	j, err := publicJWK(key.Public())
	if err != nil {
		return j, err
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		j.D = b64.EncodeToString(k.Seed())
	case *rsa.PrivateKey:
		if len(k.Primes) != 2 {
			return j, invalid("RSA keys must have two primes")
		}
		// The CRT values are computed here rather than read from
		// Precomputed, which the caller's key may not have filled.
		one := big.NewInt(1)
		p, q := k.Primes[0], k.Primes[1]
		dp := new(big.Int).Mod(k.D, new(big.Int).Sub(p, one))
		dq := new(big.Int).Mod(k.D, new(big.Int).Sub(q, one))
		qi := new(big.Int).ModInverse(q, p)
		if qi == nil {
			return j, invalid("bad RSA private key")
		}
		j.D = b64.EncodeToString(k.D.Bytes())
		j.P = b64.EncodeToString(p.Bytes())
		j.Q = b64.EncodeToString(q.Bytes())
		j.DP = b64.EncodeToString(dp.Bytes())
		j.DQ = b64.EncodeToString(dq.Bytes())
		j.QI = b64.EncodeToString(qi.Bytes())
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			return j, invalid("bad ECDSA private key")
		}
		j.D = b64.EncodeToString(d)
	default:
		return j, invalid(fmt.Sprintf("unsupported private key type %T", key))
	}
	return j, nil
}

// errUnsupported marks a JWK of a type, curve or use the package does not
// verify with; ParsePublicJWKS skips such keys, ParseJWKS rejects them.
var errUnsupported = invalid("unsupported JWK")

// decodePublic decodes the public key of j.
func (j *jwk) decodePublic() (crypto.PublicKey, error) {
	bad := invalid(fmt.Sprintf("malformed %s JWK", j.Kty))
	switch j.Kty {
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, errUnsupported
		}
		x, err := b64.Strict().DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, bad
		}
		return ed25519.PublicKey(x), nil
	case "RSA":
		n, err1 := b64.Strict().DecodeString(j.N)
		e, err2 := b64.Strict().DecodeString(j.E)
		if err1 != nil || err2 != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return nil, bad
		}
		ev := new(big.Int).SetBytes(e).Int64()
		nv := new(big.Int).SetBytes(n)
		if ev < 3 || ev%2 == 0 || ev > 1<<31-1 || nv.Bit(0) == 0 {
			return nil, bad
		}
		if nv.BitLen() < MinRSABits {
			return nil, errUnsupported
		}
		return &rsa.PublicKey{N: nv, E: int(ev)}, nil
	case "EC":
		if j.Crv != "P-256" {
			return nil, errUnsupported
		}
		x, err1 := b64.Strict().DecodeString(j.X)
		y, err2 := b64.Strict().DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, bad
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, bad
		}
		return pub, nil
	}
	return nil, errUnsupported
}

// decodePrivate decodes the private key of j and checks that it matches the
// public members.
func (j *jwk) decodePrivate() (crypto.Signer, error) {
	pub, err := j.decodePublic()
	if err != nil {
		return nil, err
	}
	bad := invalid(fmt.Sprintf("malformed private %s JWK", j.Kty))
	if j.D == "" {
		return nil, invalid("JWK has no private key")
	}
	d, err := b64.Strict().DecodeString(j.D)
	if err != nil {
		return nil, bad
	}
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if len(d) != ed25519.SeedSize {
			return nil, bad
		}
		k := ed25519.NewKeyFromSeed(d)
		if !p.Equal(k.Public()) {
			return nil, bad
		}
		return k, nil
	case *rsa.PublicKey:
		pb, err1 := b64.Strict().DecodeString(j.P)
		qb, err2 := b64.Strict().DecodeString(j.Q)
		if err1 != nil || err2 != nil || len(pb) == 0 || len(qb) == 0 {
			return nil, invalid("RSA JWK needs the primes p and q")
		}
		k := &rsa.PrivateKey{
			PublicKey: *p,
			D:         new(big.Int).SetBytes(d),
			Primes:    []*big.Int{new(big.Int).SetBytes(pb), new(big.Int).SetBytes(qb)},
		}
		k.Precompute()
		if err := k.Validate(); err != nil {
			return nil, bad
		}
		return k, nil
	case *ecdsa.PublicKey:
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil || !p.Equal(k.Public()) {
			return nil, bad
		}
		return k, nil
	}
	return nil, errUnsupported
}
