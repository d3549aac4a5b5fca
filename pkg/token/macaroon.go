package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"strings"

	"gopkg.in/macaroon.v2"
)

// macaroonRootKeyLabel separates the macaroon root key from the other uses of
// the HMAC secret (issued-key checksums, cursor keys), as in Talos.
const macaroonRootKeyLabel = "talos/macaroon/v1/root-key"

// MinRootKeySize is the shortest root key MintMacaroon accepts (the size
// MacaroonRootKey returns).
const MinRootKeySize = 32

// MacaroonRootKey derives the macaroon root key from an HMAC secret:
// HMAC-SHA256(secret, "talos/macaroon/v1/root-key"), as Talos does. Derive one
// per active secret (current and retired) and pass them all to
// VerifyMacaroon.
func MacaroonRootKey(hmacSecret []byte) []byte {
	h := hmac.New(sha256.New, hmacSecret)
	h.Write([]byte(macaroonRootKeyLabel))
	return h.Sum(nil)
}

// wireSep separates the prefix from the base64url body.
const wireSep = "_v1_"

// validPrefix reports whether p may prefix a macaroon: 1 to 16 characters of
// [a-zA-Z0-9_] that do not contain "_v1_" (config allows 1 to 8).
func validPrefix(p string) bool {
	if p == "" || len(p) > 16 || strings.Contains(p, wireSep) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// MintMacaroon mints a macaroon carrying c under rootKey (see MacaroonRootKey)
// and returns its wire form "{prefix}_v1_{base64url(V2 binary)}". The location
// is c.Issuer, the identifier c.ID, and every claim is a first-party caveat in
// the grammar of docs/derived-tokens.md. Invalid claims (see Claims; scopes
// and audiences must also be free of commas and whitespace), a bad prefix, a
// root key shorter than MinRootKeySize and a token longer than MaxTokenSize
// are ErrInvalidArgument.
func MintMacaroon(rootKey []byte, prefix string, c Claims) (string, error) {
	if len(rootKey) < MinRootKeySize {
		return "", invalid(fmt.Sprintf("macaroon root key must be at least %d bytes", MinRootKeySize))
	}
	if !validPrefix(prefix) {
		return "", invalid("macaroon prefix must be 1 to 16 characters of [a-zA-Z0-9_] without \"_v1_\"")
	}
	mc, err := prepare(c, true)
	if err != nil {
		return "", err
	}
	m, err := macaroon.New(rootKey, []byte(mc.ID), mc.Issuer, macaroon.V2)
	if err != nil {
		return "", fmt.Errorf("token: new macaroon: %w", err)
	}
	for _, cav := range mintCaveats(&mc) {
		if err := m.AddFirstPartyCaveat([]byte(cav)); err != nil {
			return "", fmt.Errorf("token: add caveat: %w", err)
		}
	}
	return encodeMacaroon(prefix, m)
}

func encodeMacaroon(prefix string, m *macaroon.Macaroon) (string, error) {
	bin, err := m.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("token: encode macaroon: %w", err)
	}
	tok := prefix + wireSep + b64.EncodeToString(bin)
	if len(tok) > MaxTokenSize {
		return "", invalid(fmt.Sprintf("the macaroon would be longer than %d bytes", MaxTokenSize))
	}
	return tok, nil
}

// decodeMacaroon decodes the body of a wire macaroon. Only the canonical
// encoding is accepted, so that every macaroon has exactly one spelling: base64url
// without padding or line breaks, the V2 binary format re-encoding to the same
// bytes (no trailing data, no empty location), first-party caveats only.
func decodeMacaroon(body string) (*macaroon.Macaroon, error) {
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, errMalformed
		}
	}
	bin, err := b64.Strict().DecodeString(body)
	if err != nil || len(bin) == 0 || bin[0] != 2 {
		return nil, errMalformed
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(bin); err != nil {
		return nil, errMalformed
	}
	if re, err := m.MarshalBinary(); err != nil || !bytes.Equal(re, bin) {
		return nil, errMalformed
	}
	for _, cav := range m.Caveats() {
		if cav.VerificationId != nil || cav.Location != "" {
			return nil, errCaveat // third-party caveats are not supported
		}
	}
	return &m, nil
}

// Attenuate appends restricting caveats to a macaroon, offline: it needs no
// root key and contacts nobody. The result verifies with rights no wider than
// tok's (see Caveat). The prefix is kept; it is the shortest valid prefix
// followed by "_v1_" and a decodable body. A token that is not a well-formed
// macaroon is ErrMalformed and one with third-party caveats SIGNATURE_INVALID
// (the signature itself is not checked: that needs the root key); an invalid
// caveat or a result longer than MaxTokenSize is ErrInvalidArgument.
func Attenuate(tok string, cs ...Caveat) (string, error) {
	if len(tok) > MaxTokenSize {
		return "", errTooLarge
	}
	prefix, m, err := splitMacaroon(tok)
	if err != nil {
		return "", err
	}
	for _, c := range cs {
		if c.err != nil {
			return "", c.err
		}
		if c.text == "" {
			return "", invalid("empty caveat")
		}
		if err := m.AddFirstPartyCaveat([]byte(c.text)); err != nil {
			return "", fmt.Errorf("token: add caveat: %w", err)
		}
	}
	return encodeMacaroon(prefix, m)
}

// splitMacaroon finds the prefix of a wire macaroon without knowing the
// configured prefixes: the first "_v1_" after a valid prefix whose remainder
// decodes.
func splitMacaroon(tok string) (string, *macaroon.Macaroon, error) {
	err := error(errMalformed)
	for i := 1; i <= 16 && i+len(wireSep) <= len(tok); i++ {
		if tok[i:i+len(wireSep)] != wireSep || !validPrefix(tok[:i]) {
			continue
		}
		var m *macaroon.Macaroon
		if m, err = decodeMacaroon(tok[i+len(wireSep):]); err == nil {
			return tok[:i], m, nil
		}
	}
	return "", nil, err
}

// LooksMacaroon reports whether s starts with "{p}_v1_" for one of prefixes,
// Talos's routing rule. It allocates nothing.
func LooksMacaroon(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(s, p) && strings.HasPrefix(s[len(p):], wireSep) {
			return true
		}
	}
	return false
}

// VerifyMacaroon verifies a wire macaroon whose prefix is one of prefixes
// under one of rootKeys (current and retired, see MacaroonRootKey) and returns
// its claims, narrowed by every caveat: the intersection of the scp caveats,
// the earliest exp, the latest nbf, the intersection of the aud and acl
// caveats, the free conditions. Checking is strict: an unknown or misplaced
// caveat, a third-party caveat, a location other than the iss caveat or a
// missing iss, nid, akid, tty or exp caveat is SIGNATURE_INVALID. Then the
// times, issuer, tenant, audience and client IP are checked as for JWTs (the
// client IP must lie in every acl caveat). Errors: see the package
// documentation; invalid options are ErrInvalidArgument.
func VerifyMacaroon(tok string, rootKeys [][]byte, prefixes []string, o VerifyOptions) (Claims, error) {
	if err := o.check(); err != nil {
		return Claims{}, err
	}
	if len(tok) > MaxTokenSize {
		return Claims{}, errTooLarge
	}
	var (
		m   *macaroon.Macaroon
		err error = errMalformed
	)
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(tok, p) && strings.HasPrefix(tok[len(p):], wireSep) {
			if m, err = decodeMacaroon(tok[len(p)+len(wireSep):]); err == nil {
				break
			}
		}
	}
	if err != nil {
		return Claims{}, err
	}
	var conds []string
	err = errSignature
	for _, k := range rootKeys {
		if len(k) == 0 {
			continue
		}
		if conds, err = m.VerifySignature(k, nil); err == nil {
			break
		}
	}
	if err != nil {
		return Claims{}, errSignature
	}
	var p caveats
	for _, cav := range conds {
		if err := p.add(cav); err != nil {
			return Claims{}, err
		}
	}
	c, err := p.finish()
	if err != nil {
		return Claims{}, err
	}
	c.ID = string(m.Id())
	if !text(c.ID) || m.Location() != c.Issuer {
		return Claims{}, errClaims // the location is outside the signature
	}
	if err := o.checkTimes(c.IssuedAt, c.NotBefore, c.Expiry); err != nil {
		return Claims{}, err
	}
	if err := o.checkClaims(&c, p.acls); err != nil {
		return Claims{}, err
	}
	if p.restrictsToNothing(&c) {
		// With SkipIPCheck the caller checks c.AllowedCIDRs, whose empty
		// value would mean unrestricted; without it, checkClaims has
		// already refused every address.
		return Claims{}, errIPNotAllow
	}
	return c, nil
}
