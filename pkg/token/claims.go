package token

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/talos-project/talos/pkg/credential"
)

// MaxTokenSize is the longest derived token, in bytes, that verification
// reads (the reference's limit on a presented credential). Longer input is
// ErrMalformed without being decoded, and minting or attenuating refuses to
// produce a longer token.
const MaxTokenSize = credential.MaxCredentialBytes

// MaxCustomClaimsSize is the largest serialized custom-claims object, in bytes.
const MaxCustomClaimsSize = 4096

// TypeDerived is the token type every derived token carries (claim and caveat
// "tty").
const TypeDerived = "derived"

// Claims are what a derived token carries: JWT claims, or macaroon caveats.
//
// Minting requires Subject, Issuer, Tenant, IssuedAt and Expiry (after
// IssuedAt and NotBefore); an empty ID is replaced by NewID(). Times are
// carried at second precision (truncated). The verifiers return Claims whose
// slices and maps are owned by the caller; unset optional claims come back as
// nil (or the zero value).
type Claims struct {
	ID        string           // jti; a macaroon's identifier
	Subject   credential.KeyID // sub, and akid and pid: the parent key
	Issuer    string           // iss; a macaroon's location
	Audiences []string         // aud: optional audience binding

	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf; zero: not carried (valid from IssuedAt on)
	Expiry    time.Time // exp

	// SigningKeyID is the kid of the key that verified a JWT (VerifyJWT
	// sets it; minting ignores it); empty for macaroons. A verdict cached
	// past a verification must stop when that key leaves the key set.
	SigningKeyID string

	ActorID      string                // oid
	Scopes       []string              // scp
	Metadata     json.RawMessage       // meta: a JSON object, or nil
	Tenant       credential.Tenant     // nid
	AllowedCIDRs []netip.Prefix        // acl: empty means unrestricted
	Visibility   credential.Visibility // vis "public" | "secret"; zero: not carried

	// Custom claims sit at the top level of a JWT (a "cst" caveat of a
	// macaroon). Reserved names (ReservedClaim), in any letter case, are
	// silently dropped, as Talos does, and the rest must serialize to at most
	// MaxCustomClaimsSize bytes. Verification decodes numbers as float64.
	Custom map[string]any

	// Conditions are free "key = value" restrictions of a macaroon, which
	// the verifier does not interpret but reports back for the caller to
	// enforce; JWTs carry none (minting a JWT with conditions is an error).
	// A key set twice to different values makes the macaroon unusable.
	Conditions map[string]string
}

// reserved are the claim names a custom claim may not use.
var reserved = map[string]bool{
	"jti": true, "sub": true, "iss": true, "aud": true, "iat": true, "exp": true, "nbf": true,
	"nid": true, "akid": true, "pid": true, "tty": true, "oid": true, "scp": true, "scope": true,
	"meta": true, "vis": true, "acl": true,
}

// ReservedClaim reports whether name is a claim that Talos sets itself and
// that custom claims may therefore not use: a reserved name in any letter
// case, Unicode folding included ("Scp", "EXP", "ſcp" with U+017F LONG
// S). encoding/json matches object keys to struct fields case-insensitively
// with that folding, and the last duplicate wins, so a custom claim "Scp"
// spliced after "scp" would replace the token's scopes when it is read back.
func ReservedClaim(name string) bool { return reserved[name] || foldsToReserved(name) }

// foldsToReserved reports whether name equals a reserved name under Unicode
// case folding without being one.
func foldsToReserved(name string) bool {
	if len(name) > 3*len("scope") { // every reserved name is short ASCII; a rune folding to ASCII has at most 3 bytes
		return false
	}
	for r := range reserved {
		if strings.EqualFold(name, r) {
			return !reserved[name]
		}
	}
	return false
}

// NewID returns a random token ID: a UUIDv4 in canonical form, like Talos's.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails; see crypto/rand.Read
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// minted is a validated copy of Claims, ready to be encoded.
type minted struct {
	Claims
	custom []byte // serialized custom claims without reserved names, or nil
}

// prepare validates c for minting and fills the ID. macaroon selects the
// stricter rules of the caveat grammar.
func prepare(c Claims, macaroon bool) (minted, error) {
	m := minted{Claims: c}
	if m.ID == "" {
		m.ID = NewID()
	}
	if !text(m.ID) {
		return m, invalid("token ID must be printable UTF-8")
	}
	if m.Subject == "" || !text(string(m.Subject)) {
		return m, invalid("subject (parent key ID) is required")
	}
	if m.Issuer == "" || !text(m.Issuer) {
		return m, invalid("issuer is required")
	}
	if m.Tenant == "" || !text(string(m.Tenant)) {
		return m, invalid("tenant is required")
	}
	if m.ActorID != "" && !text(m.ActorID) {
		return m, invalid("actor ID must be printable UTF-8")
	}
	if m.IssuedAt.IsZero() || m.Expiry.IsZero() {
		return m, invalid("issue and expiry times are required")
	}
	for _, t := range []time.Time{m.IssuedAt, m.NotBefore, m.Expiry} {
		if !t.IsZero() && (t.Unix() < 0 || t.UTC().Year() > 9999) {
			return m, invalid("times must lie between 1970 and 9999")
		}
	}
	if m.Expiry.Unix() <= m.IssuedAt.Unix() || (!m.NotBefore.IsZero() && m.Expiry.Unix() <= m.NotBefore.Unix()) {
		return m, invalid("expiry must be after the issue and not-before times")
	}
	switch m.Visibility {
	case 0, credential.VisibilitySecret, credential.VisibilityPublic:
	default:
		return m, invalid("unknown visibility")
	}
	for _, p := range m.AllowedCIDRs {
		if !p.IsValid() {
			return m, invalid("invalid CIDR")
		}
	}
	if err := checkList("scope", m.Scopes, macaroon); err != nil {
		return m, err
	}
	if err := checkList("audience", m.Audiences, macaroon); err != nil {
		return m, err
	}
	meta, err := metadataObject(m.Metadata)
	if err != nil {
		return m, err
	}
	m.Metadata = meta
	if m.custom, err = customJSON(m.Custom); err != nil {
		return m, err
	}
	if len(m.Conditions) > 0 && !macaroon {
		return m, invalid("conditions are carried by macaroons only")
	}
	for k, v := range m.Conditions {
		if err := checkCondition(k, v); err != nil {
			return m, err
		}
	}
	return m, nil
}

// text reports whether s is valid UTF-8 without control characters, so that
// it fits a caveat and a log line.
func text(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// listElement reports whether s may be an element of a caveat list: printable,
// non-empty, without commas or whitespace.
func listElement(s string) bool {
	if s == "" || !text(s) {
		return false
	}
	for _, r := range s {
		if r == ',' || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// maxList is the most elements a list caveat (scp, aud, acl) may hold, which
// bounds the work of intersecting them.
const maxList = 256

func checkList(what string, l []string, macaroon bool) error {
	if macaroon && len(l) > maxList {
		return invalid(fmt.Sprintf("a macaroon carries at most %d of each list", maxList))
	}
	for _, s := range l {
		if macaroon && !listElement(s) {
			return invalid(fmt.Sprintf("a macaroon %s must be non-empty printable text without commas or spaces", what))
		}
		if s == "" {
			return invalid(fmt.Sprintf("empty %s", what))
		}
	}
	return nil
}

// metadataObject returns meta compacted, or nil for empty or null metadata;
// anything but a JSON object is an error.
func metadataObject(meta json.RawMessage) (json.RawMessage, error) {
	t := bytes.TrimSpace(meta)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if t[0] != '{' || !json.Valid(t) {
		return nil, invalid("metadata must be a JSON object")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, t); err != nil {
		return nil, invalid("metadata must be a JSON object")
	}
	return b.Bytes(), nil
}

// customJSON serializes the custom claims without reserved names; nil when
// none remain.
func customJSON(custom map[string]any) ([]byte, error) {
	if len(custom) == 0 {
		return nil, nil
	}
	c := maps.Clone(custom)
	maps.DeleteFunc(c, func(k string, _ any) bool { return ReservedClaim(k) })
	if len(c) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, invalid("custom claims must be JSON values")
	}
	if len(b) > MaxCustomClaimsSize {
		return nil, invalid(fmt.Sprintf("custom claims must serialize to at most %d bytes", MaxCustomClaimsSize))
	}
	return b, nil
}

// decodeCustom parses a custom-claims JSON object, dropping reserved names.
func decodeCustom(b []byte) (map[string]any, bool) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, false
	}
	maps.DeleteFunc(m, func(k string, _ any) bool { return ReservedClaim(k) })
	if len(m) == 0 {
		return nil, true
	}
	return m, true
}

func visibilityText(v credential.Visibility) string {
	switch v {
	case credential.VisibilityPublic:
		return "public"
	case credential.VisibilitySecret:
		return "secret"
	}
	return ""
}

func parseVisibility(s string) (credential.Visibility, bool) {
	switch s {
	case "public":
		return credential.VisibilityPublic, true
	case "secret":
		return credential.VisibilitySecret, true
	}
	return 0, false
}

// Result is the verification result of a derived token of type typ
// (credential.TypeJWT or TypeMacaroon) carrying c: the parent key's identity,
// the token's own scopes, expiry, audiences and CIDRs, and the custom claims
// overlaid with the sealed metadata (metadata wins on a collision, as in Ory
// Talos). A zero Claims gives a Result with only its Type set.
func (c Claims) Result(typ credential.CredentialType) credential.Result {
	if c.Subject == "" {
		return credential.Result{Type: typ}
	}
	return credential.Result{
		Type: typ, Tenant: c.Tenant, KeyID: c.Subject, ActorID: c.ActorID, Scopes: c.Scopes,
		Metadata: mergeMetadata(c.Custom, c.Metadata), Status: credential.StateActive, Visibility: c.Visibility,
		ExpireTime: c.Expiry, AllowedCIDRs: c.AllowedCIDRs, Audiences: c.Audiences, Issuer: c.Issuer,
		Conditions: c.Conditions,
	}
}

func mergeMetadata(custom map[string]any, meta json.RawMessage) json.RawMessage {
	if len(custom) == 0 {
		return meta
	}
	out := maps.Clone(custom)
	var m map[string]any
	if len(meta) > 0 && json.Unmarshal(meta, &m) == nil {
		maps.Copy(out, m)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return meta
	}
	return b
}
