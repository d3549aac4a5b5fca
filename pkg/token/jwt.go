package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/talos-project/talos/pkg/credential"
)

// Signer signs derived JWTs with its current key and publishes the public
// keys of the current and the not yet expired retired keys. It is immutable
// and safe for concurrent use; build a new one to rotate.
type Signer struct {
	keys    []signingKey // current first, then the others in the order given
	byKID   map[string]int
	current *signingKey
}

type signingKey struct {
	SigningKey
	method jwt.SigningMethod
	header string // base64url of the JOSE header
	public map[string]any
}

// NewSigner returns a Signer over keys. The current key is the one whose ID is
// currentKID or, when currentKID is empty, the first key with a zero NotAfter;
// it must have a zero NotAfter. Every other key is published and accepted by
// KeySet until its NotAfter (forever when NotAfter is zero, like every key of
// a Talos JWKS). An empty ID is replaced by the key's RFC 7638 thumbprint.
// Invalid or duplicate keys, an unknown currentKID and no current key are
// ErrInvalidArgument. keys is copied; the private keys are shared, not copied.
func NewSigner(keys []SigningKey, currentKID string) (*Signer, error) {
	s := &Signer{byKID: make(map[string]int, len(keys))}
	cur := -1
	all := make([]signingKey, 0, len(keys))
	for i, k := range keys {
		if err := k.check(); err != nil {
			return nil, fmt.Errorf("signing key %d: %w", i, err)
		}
		pub, _ := publicJWK(k.Key.Public()) // check succeeded, so this does too
		if k.ID == "" {
			k.ID = pub.thumbprint()
		}
		if _, dup := s.byKID[k.ID]; dup {
			return nil, invalid(fmt.Sprintf("signing key %d: duplicate kid", i))
		}
		s.byKID[k.ID] = len(all)
		pub.Use, pub.Alg, pub.Kid = "sig", k.Algorithm, k.ID
		header, err := json.Marshal(struct {
			Alg string `json:"alg"`
			Kid string `json:"kid"`
			Typ string `json:"typ"`
		}{k.Algorithm, k.ID, "JWT"})
		if err != nil {
			return nil, fmt.Errorf("token: encode header: %w", err)
		}
		if (currentKID != "" && k.ID == currentKID) || (currentKID == "" && cur < 0 && k.NotAfter.IsZero()) {
			cur = len(all)
		}
		all = append(all, signingKey{
			SigningKey: k,
			method:     methodOf(k.Algorithm),
			header:     b64.EncodeToString(header),
			public:     pub.generic(),
		})
	}
	if cur < 0 {
		if currentKID != "" {
			return nil, invalid("no signing key has the current kid")
		}
		return nil, invalid("no current signing key (every key is retired)")
	}
	if !all[cur].NotAfter.IsZero() {
		return nil, invalid("the current signing key must not be retired")
	}
	// Current first, so that it leads the published set.
	s.keys = make([]signingKey, 0, len(all))
	s.keys = append(s.keys, all[cur])
	s.keys = append(s.keys, all[:cur]...)
	s.keys = append(s.keys, all[cur+1:]...)
	for i, k := range s.keys {
		s.byKID[k.ID] = i
	}
	s.current = &s.keys[0]
	return s, nil
}

// CurrentKID returns the kid of the key that signs.
func (s *Signer) CurrentKID() string { return s.current.ID }

// published reports whether k is still published and accepted at now.
func (k *signingKey) published(now time.Time) bool {
	return k.NotAfter.IsZero() || k.NotAfter.After(now)
}

// PublicJWKS returns {"keys":[...]}: the public JWKs ("use":"sig", "alg",
// "kid") of the current key and of every other key still published at now, as
// generic JSON (map[string]any, []any, string) that structpb.NewStruct and
// encoding/json accept. The result is the caller's.
func (s *Signer) PublicJWKS(now time.Time) map[string]any {
	keys := make([]any, 0, len(s.keys))
	for i := range s.keys {
		if k := &s.keys[i]; k == s.current || k.published(now) {
			m := make(map[string]any, len(k.public))
			for n, v := range k.public {
				m[n] = v
			}
			keys = append(keys, m)
		}
	}
	return map[string]any{"keys": keys}
}

// KeySet returns the verification keys published at now (see PublicJWKS).
func (s *Signer) KeySet(now time.Time) *KeySet {
	ks := newKeySet(len(s.keys))
	for i := range s.keys {
		if k := &s.keys[i]; k == s.current || k.published(now) {
			ks.add(k.ID, k.Algorithm, k.Key.Public())
		}
	}
	return ks
}

// jwtPayload is the JSON payload of a derived JWT, without custom claims.
type jwtPayload struct {
	ID         string          `json:"jti"`
	Subject    string          `json:"sub"`
	Issuer     string          `json:"iss"`
	Audiences  []string        `json:"aud,omitempty"`
	IssuedAt   int64           `json:"iat"`
	NotBefore  int64           `json:"nbf,omitempty"`
	Expiry     int64           `json:"exp"`
	Tenant     string          `json:"nid"`
	KeyID      string          `json:"akid"`
	ParentID   string          `json:"pid"`
	Type       string          `json:"tty"`
	ActorID    string          `json:"oid,omitempty"`
	Scopes     []string        `json:"scp,omitempty"`
	Metadata   json.RawMessage `json:"meta,omitempty"`
	Visibility string          `json:"vis,omitempty"`
	CIDRs      []string        `json:"acl,omitempty"`
}

// SignJWT signs c with the current key: a compact JWS whose header is
// {"alg","kid","typ":"JWT"} and whose payload holds the claims of
// docs/derived-tokens.md, custom claims at the top level. Invalid claims (see
// Claims), custom claims over MaxCustomClaimsSize, conditions, and a token
// longer than MaxTokenSize are ErrInvalidArgument.
func (s *Signer) SignJWT(c Claims) (string, error) {
	m, err := prepare(c, false)
	if err != nil {
		return "", err
	}
	p := jwtPayload{
		ID:         m.ID,
		Subject:    string(m.Subject),
		Issuer:     m.Issuer,
		Audiences:  m.Audiences,
		IssuedAt:   m.IssuedAt.Unix(),
		Expiry:     m.Expiry.Unix(),
		Tenant:     string(m.Tenant),
		KeyID:      string(m.Subject),
		ParentID:   string(m.Subject),
		Type:       TypeDerived,
		ActorID:    m.ActorID,
		Scopes:     m.Scopes,
		Metadata:   m.Metadata,
		Visibility: visibilityText(m.Visibility),
	}
	if !m.NotBefore.IsZero() {
		p.NotBefore = m.NotBefore.Unix()
	}
	for _, pre := range m.AllowedCIDRs {
		p.CIDRs = append(p.CIDRs, pre.Masked().String())
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	if m.custom != nil { // splice: {...known} + {...custom} -> {...known,...custom}
		body = append(append(body[:len(body)-1], ','), m.custom[1:]...)
	}
	k := s.current
	input := k.header + "." + b64.EncodeToString(body)
	sig, err := k.method.Sign(input, k.Key)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	tok := input + "." + b64.EncodeToString(sig)
	if len(tok) > MaxTokenSize {
		return "", invalid(fmt.Sprintf("the token would be longer than %d bytes", MaxTokenSize))
	}
	return tok, nil
}

// LooksJWT reports whether s has the shape of a JWS compact serialization
// whose header is a JSON object: ^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$,
// Talos's routing rule. It allocates nothing. (VerifyJWT also reads an empty
// signature, so that an unsigned alg "none" token given to it directly is
// SIGNATURE_INVALID rather than malformed.)
func LooksJWT(s string) bool { return jwtShape(s, false) }

func jwtShape(s string, emptySignature bool) bool {
	if len(s) < 3 || s[:3] != "eyJ" {
		return false
	}
	dots, run := 0, 0
	for i := 3; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			run++
		case c == '.':
			if run == 0 {
				return false
			}
			dots, run = dots+1, 0
		default:
			return false
		}
	}
	return dots == 2 && (run > 0 || emptySignature)
}

// VerifyJWT verifies a derived JWT against the public keys in ks and returns
// its claims. Only the algorithm of the token's kid is accepted (so alg "none"
// and HS256 keyed with a public key fail), base64url must be canonical, exp is
// required, and exp, nbf and iat are checked with o.ClockSkew of leeway. Then
// the token type must be "derived", and iss, tenant, audience and client IP
// are checked (see VerifyOptions). Errors: see the package documentation;
// invalid options are ErrInvalidArgument. The claims are returned only on
// success.
func VerifyJWT(tok string, ks *KeySet, o VerifyOptions) (Claims, error) {
	if err := o.check(); err != nil {
		return Claims{}, err
	}
	if len(tok) > MaxTokenSize {
		return Claims{}, errTooLarge
	}
	if !jwtShape(tok, true) {
		return Claims{}, errMalformed
	}
	if ks.Len() == 0 {
		return Claims{}, errUnknownKey
	}
	var pc jwtClaims
	p := jwt.NewParser(
		jwt.WithValidMethods(ks.methods),
		jwt.WithLeeway(o.ClockSkew),
		jwt.WithTimeFunc(func() time.Time { return o.Now }),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	)
	t, err := p.ParseWithClaims(tok, &pc, ks.key)
	if err != nil {
		return Claims{}, jwtError(err)
	}
	c, acl, err := pc.claims()
	if err != nil {
		return Claims{}, err
	}
	c.SigningKeyID, _ = t.Header["kid"].(string)
	var acls [][]netip.Prefix
	if len(acl) > 0 {
		acls = [][]netip.Prefix{acl}
	}
	if err := o.checkClaims(&c, acls); err != nil {
		return Claims{}, err
	}
	return c, nil
}

// jwtError maps an error of jwt.Parser to the package's errors.
func jwtError(err error) error {
	var ce *credential.Error
	switch {
	case errors.As(err, &ce): // from KeySet.key
		return ce
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errMalformed
	case errors.Is(err, jwt.ErrTokenExpired):
		return errExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return errClaims
	}
	return errSignature
}

// jwtClaims receives a JWT payload. Decoding is lenient about meaning (that is
// checked by claims, after the signature) but strict about JSON types, whose
// violations are malformed tokens.
type jwtClaims struct {
	in struct {
		ID         string           `json:"jti"`
		Subject    string           `json:"sub"`
		Issuer     string           `json:"iss"`
		Audiences  jwt.ClaimStrings `json:"aud"`
		IssuedAt   *jwt.NumericDate `json:"iat"`
		NotBefore  *jwt.NumericDate `json:"nbf"`
		Expiry     *jwt.NumericDate `json:"exp"`
		Tenant     string           `json:"nid"`
		KeyID      string           `json:"akid"`
		ParentID   string           `json:"pid"`
		Type       string           `json:"tty"`
		ActorID    string           `json:"oid"`
		Scopes     []string         `json:"scp"`
		Metadata   json.RawMessage  `json:"meta"`
		Visibility string           `json:"vis"`
		CIDRs      []string         `json:"acl"`
	}
	custom map[string]any
}

// errFoldedClaim rejects a payload with a claim named like a reserved one in
// another letter case ("Scp", "EXP").
var errFoldedClaim = errors.New("token: a claim name folds to a reserved claim")

func (j *jwtClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &j.in); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		if reserved[k] {
			continue
		}
		if foldsToReserved(k) {
			// The struct above read it as that claim (encoding/json folds
			// case), perhaps over the real one: no Signer writes it.
			return errFoldedClaim
		}
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		if j.custom == nil {
			j.custom = make(map[string]any, len(all))
		}
		j.custom[k] = x
	}
	return nil
}

// jwt.Claims, for the parser's time checks; the rest is checked by claims.
func (j *jwtClaims) GetExpirationTime() (*jwt.NumericDate, error) { return j.in.Expiry, nil }
func (j *jwtClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return j.in.IssuedAt, nil }
func (j *jwtClaims) GetNotBefore() (*jwt.NumericDate, error)      { return j.in.NotBefore, nil }
func (j *jwtClaims) GetIssuer() (string, error)                   { return j.in.Issuer, nil }
func (j *jwtClaims) GetSubject() (string, error)                  { return j.in.Subject, nil }
func (j *jwtClaims) GetAudience() (jwt.ClaimStrings, error)       { return j.in.Audiences, nil }

// claims checks the meaning of an authentic payload and converts it; acl is
// the CIDR restriction.
func (j *jwtClaims) claims() (Claims, []netip.Prefix, error) {
	in := &j.in
	if in.Type != TypeDerived {
		return Claims{}, nil, errType
	}
	if in.Subject == "" || (in.KeyID != "" && in.KeyID != in.Subject) || (in.ParentID != "" && in.ParentID != in.Subject) {
		return Claims{}, nil, errClaims
	}
	c := Claims{
		ID:        in.ID,
		Subject:   credential.KeyID(in.Subject),
		Issuer:    in.Issuer,
		Expiry:    dateUTC(in.Expiry),
		Tenant:    credential.Tenant(in.Tenant),
		ActorID:   in.ActorID,
		Custom:    j.custom,
		Audiences: nonEmpty(in.Audiences),
		Scopes:    nonEmpty(in.Scopes),
		IssuedAt:  dateUTC(in.IssuedAt),
		NotBefore: dateUTC(in.NotBefore),
	}
	if in.Visibility != "" {
		v, ok := parseVisibility(in.Visibility)
		if !ok {
			return Claims{}, nil, errClaims
		}
		c.Visibility = v
	}
	meta, err := metadataObject(in.Metadata)
	if err != nil {
		return Claims{}, nil, errClaims
	}
	c.Metadata = meta
	for _, s := range in.CIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Claims{}, nil, errClaims
		}
		c.AllowedCIDRs = append(c.AllowedCIDRs, p.Masked())
	}
	return c, c.AllowedCIDRs, nil
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func dateUTC(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.UTC()
}
