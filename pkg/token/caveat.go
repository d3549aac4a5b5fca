package token

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// Caveat is one restricting first-party caveat for Attenuate. Build it with
// Expires, NotBefore, Scopes, Audiences, CIDRs or Condition; a constructor
// given bad input returns a Caveat that Attenuate rejects with
// ErrInvalidArgument. The zero value is invalid.
type Caveat struct {
	text string
	err  error
}

// String returns the caveat text (docs/derived-tokens.md has the grammar).
func (c Caveat) String() string { return c.text }

// Expires restricts the macaroon to before t (second precision, truncated):
// "exp < 2026-03-01T12:00:00Z". Every exp caveat applies: the earliest wins.
func Expires(t time.Time) Caveat { return timeCaveat("exp <", t) }

// NotBefore restricts the macaroon to t and later (second precision,
// truncated): "nbf >= 2026-03-01T12:00:00Z". Every nbf caveat applies: the
// latest wins.
func NotBefore(t time.Time) Caveat { return timeCaveat("nbf >=", t) }

func timeCaveat(head string, t time.Time) Caveat {
	if t.IsZero() || t.Unix() < 0 || t.UTC().Year() > 9999 {
		return Caveat{err: invalid("caveat times must lie between 1970 and 9999")}
	}
	return Caveat{text: head + " " + formatTime(t)}
}

// Scopes restricts the macaroon to these scopes: "scp = read,write". The
// scopes of a macaroon are the intersection of all its scp caveats, so a
// caveat can drop scopes but never add one. No argument drops them all.
// Scopes must be non-empty printable text without commas or whitespace.
func Scopes(s ...string) Caveat {
	if err := checkList("scope", s, true); err != nil {
		return Caveat{err: err}
	}
	return Caveat{text: "scp = " + strings.Join(s, ",")}
}

// Audiences binds the macaroon to these audiences: "aud = a,b". The
// audiences are the intersection of all aud caveats; a verifier accepts a
// bound macaroon only when it expects one of them. At least one audience is
// required, in the syntax of Scopes.
func Audiences(a ...string) Caveat {
	if len(a) == 0 {
		return Caveat{err: invalid("an audience caveat needs at least one audience")}
	}
	if err := checkList("audience", a, true); err != nil {
		return Caveat{err: err}
	}
	return Caveat{text: "aud = " + strings.Join(a, ",")}
}

// CIDRs restricts the client addresses: "acl = 10.0.0.0/8,2001:db8::/32".
// The client IP must lie in one prefix of every acl caveat. At least one
// valid prefix is required; prefixes are masked.
func CIDRs(p ...netip.Prefix) Caveat {
	if len(p) == 0 || len(p) > maxList {
		return Caveat{err: invalid("a CIDR caveat needs 1 to 256 prefixes")}
	}
	for _, x := range p {
		if !x.IsValid() {
			return Caveat{err: invalid("invalid CIDR")}
		}
	}
	return Caveat{text: "acl = " + joinPrefixes(p)}
}

func joinPrefixes(p []netip.Prefix) string {
	s := make([]string, len(p))
	for i, x := range p {
		s[i] = x.Masked().String()
	}
	return strings.Join(s, ",")
}

// Condition adds a free restriction "cond key = value" that the verifier
// does not interpret but reports in Claims.Conditions, for the caller to
// enforce. A key is 1 to 64 characters of [A-Za-z0-9_.:/-]; a value is
// printable text of at most 1024 bytes. Setting one key to two different
// values makes the macaroon unusable.
func Condition(key, value string) Caveat {
	if err := checkCondition(key, value); err != nil {
		return Caveat{err: err}
	}
	return Caveat{text: "cond " + key + " = " + value}
}

func checkCondition(key, value string) error {
	if !conditionKey(key) {
		return invalid("a condition key must be 1 to 64 characters of [A-Za-z0-9_.:/-]")
	}
	if len(value) > 1024 || !text(value) {
		return invalid("a condition value must be printable text of at most 1024 bytes")
	}
	return nil
}

func conditionKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_.:/-", c) >= 0) {
			return false
		}
	}
	return true
}

func formatTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// mintCaveats returns the caveats of a new macaroon: the identity caveats,
// then "tty = derived", which seals them, then the restricting ones.
func mintCaveats(m *minted) []string {
	cs := []string{
		"iss = " + m.Issuer,
		"nid = " + string(m.Tenant),
		"akid = " + string(m.Subject),
	}
	if m.ActorID != "" {
		cs = append(cs, "oid = "+m.ActorID)
	}
	if v := visibilityText(m.Visibility); v != "" {
		cs = append(cs, "vis = "+v)
	}
	cs = append(cs, "iat = "+formatTime(m.IssuedAt))
	if m.Metadata != nil {
		cs = append(cs, "meta = "+b64.EncodeToString(m.Metadata))
	}
	if m.custom != nil {
		cs = append(cs, "cst = "+b64.EncodeToString(m.custom))
	}
	cs = append(cs, "tty = "+TypeDerived, Expires(m.Expiry).text)
	if !m.NotBefore.IsZero() {
		cs = append(cs, NotBefore(m.NotBefore).text)
	}
	cs = append(cs, "scp = "+strings.Join(m.Scopes, ","))
	if len(m.AllowedCIDRs) > 0 {
		cs = append(cs, "acl = "+joinPrefixes(m.AllowedCIDRs))
	}
	if len(m.Audiences) > 0 {
		cs = append(cs, "aud = "+strings.Join(m.Audiences, ","))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Conditions)) {
		cs = append(cs, "cond "+k+" = "+m.Conditions[k])
	}
	return cs
}

// Identity caveats: each at most once, and only before the seal.
const (
	seenIss = 1 << iota
	seenNid
	seenAkid
	seenOid
	seenVis
	seenIat
	seenMeta
	seenCst
	seenTty
)

// caveats folds the first-party caveats of an authentic macaroon into claims.
// A holder can only append caveats, so the identity caveats (who the token
// speaks for) are accepted only before "tty = derived"; after it only
// restricting caveats may follow, and each of those can only narrow: exp and
// nbf take the tightest bound, scp and aud intersect, every acl applies.
type caveats struct {
	c         Claims
	seen      int
	exp, nbf  time.Time
	scopes    []string
	scopesSet bool
	aud       []string
	audSet    bool
	acls      [][]netip.Prefix
}

func (p *caveats) add(cav string) error {
	name, rest, ok := strings.Cut(cav, " ")
	if !ok {
		return errCaveat
	}
	if name == "cond" {
		key, v, ok := strings.Cut(rest, " = ")
		if !ok || checkCondition(key, v) != nil {
			return errCaveat
		}
		if old, ok := p.c.Conditions[key]; ok && old != v {
			return errClaims // unsatisfiable
		}
		if p.c.Conditions == nil {
			p.c.Conditions = map[string]string{}
		}
		p.c.Conditions[key] = v
		return nil
	}
	op, v, ok := strings.Cut(rest, " ")
	if !ok {
		return errCaveat
	}
	switch {
	case name == "exp" && op == "<":
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errCaveat
		}
		if p.exp.IsZero() || t.Before(p.exp) {
			p.exp = t
		}
		return nil
	case name == "nbf" && op == ">=":
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errCaveat
		}
		if t.After(p.nbf) {
			p.nbf = t
		}
		return nil
	case op != "=":
		return errCaveat
	}
	switch name {
	case "scp":
		l, ok := parseList(v, true)
		if !ok {
			return errCaveat
		}
		p.scopes, p.scopesSet = narrow(p.scopes, p.scopesSet, l), true
		return nil
	case "aud":
		l, ok := parseList(v, false)
		if !ok {
			return errCaveat
		}
		p.aud, p.audSet = narrow(p.aud, p.audSet, l), true
		return nil
	case "acl":
		l, ok := parseList(v, false)
		if !ok {
			return errCaveat
		}
		acl := make([]netip.Prefix, len(l))
		for i, s := range l {
			pre, err := netip.ParsePrefix(s)
			if err != nil {
				return errCaveat
			}
			acl[i] = pre.Masked()
		}
		p.acls = append(p.acls, acl)
		return nil
	}
	return p.identity(name, v)
}

// identity handles the caveats that say who the token speaks for.
func (p *caveats) identity(name, v string) error {
	bit := 0
	switch name {
	case "iss":
		bit = seenIss
	case "nid":
		bit = seenNid
	case "akid":
		bit = seenAkid
	case "oid":
		bit = seenOid
	case "vis":
		bit = seenVis
	case "iat":
		bit = seenIat
	case "meta":
		bit = seenMeta
	case "cst":
		bit = seenCst
	case "tty":
		bit = seenTty
	default:
		return errCaveat
	}
	if p.seen&seenTty != 0 || p.seen&bit != 0 {
		return errCaveat // after the seal, or repeated
	}
	p.seen |= bit
	if v == "" || !text(v) {
		return errCaveat
	}
	switch name {
	case "iss":
		p.c.Issuer = v
	case "nid":
		p.c.Tenant = credential.Tenant(v)
	case "akid":
		p.c.Subject = credential.KeyID(v)
	case "oid":
		p.c.ActorID = v
	case "vis":
		vis, ok := parseVisibility(v)
		if !ok {
			return errCaveat
		}
		p.c.Visibility = vis
	case "iat":
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errCaveat
		}
		p.c.IssuedAt = t.UTC()
	case "meta":
		b, err := b64.Strict().DecodeString(v)
		if err != nil {
			return errCaveat
		}
		meta, err := metadataObject(b)
		if err != nil || meta == nil {
			return errCaveat
		}
		p.c.Metadata = meta
	case "cst":
		b, err := b64.Strict().DecodeString(v)
		if err != nil {
			return errCaveat
		}
		m, ok := decodeCustom(b)
		if !ok {
			return errCaveat
		}
		p.c.Custom = m
	case "tty":
		if v != TypeDerived {
			return errType
		}
	}
	return nil
}

// parseList splits a caveat list of at most maxList elements; empty is allowed
// only when empty is true.
func parseList(v string, empty bool) ([]string, bool) {
	if v == "" {
		return []string{}, empty
	}
	if strings.Count(v, ",") >= maxList {
		return nil, false
	}
	l := strings.Split(v, ",")
	for _, s := range l {
		if !listElement(s) {
			return nil, false
		}
	}
	return l, true
}

// narrow intersects cur (when set) with l, keeping cur's order.
func narrow(cur []string, set bool, l []string) []string {
	if !set {
		return slices.Clone(l)
	}
	if len(cur)*len(l) <= 256 {
		return slices.DeleteFunc(cur, func(s string) bool { return !slices.Contains(l, s) })
	}
	in := make(map[string]bool, len(l))
	for _, s := range l {
		in[s] = true
	}
	return slices.DeleteFunc(cur, func(s string) bool { return !in[s] })
}

// finish checks that the required caveats were present and returns the
// narrowed claims.
func (p *caveats) finish() (Claims, error) {
	const required = seenIss | seenNid | seenAkid | seenTty
	if p.seen&required != required || p.exp.IsZero() {
		if p.seen&seenTty == 0 {
			return Claims{}, errType
		}
		return Claims{}, errClaims
	}
	c := p.c
	c.Expiry = p.exp.UTC()
	if !p.nbf.IsZero() {
		c.NotBefore = p.nbf.UTC()
	}
	c.Scopes = nonEmpty(p.scopes)
	if p.audSet {
		c.Audiences = p.aud // non-nil even when empty: bound to nothing
	}
	if len(p.acls) > 0 {
		c.AllowedCIDRs = p.acls[0]
		if len(p.acls) > 1 {
			// IPv4 addresses match IPv4-mapped IPv6 prefixes too
			// (credential.IPAllowed), which netip's Overlaps does not see:
			// the acls are intersected in a form with one spelling per
			// address.
			c.AllowedCIDRs = canonicalACL(p.acls[0])
			for _, acl := range p.acls[1:] {
				c.AllowedCIDRs = intersectPrefixes(c.AllowedCIDRs, canonicalACL(acl))
			}
			// An empty intersection admits no address, but an empty
			// AllowedCIDRs means unrestricted: VerifyMacaroon refuses such
			// a token for every client (see restrictsToNothing).
		}
	}
	return c, nil
}

// restrictsToNothing reports whether acl caveats were present but no address
// lies in all of them (c.AllowedCIDRs is then empty, which would read as no
// restriction).
func (p *caveats) restrictsToNothing(c *Claims) bool {
	return len(p.acls) > 0 && len(c.AllowedCIDRs) == 0
}

// mappedV4 is the IPv4-mapped IPv6 range, ::ffff:0:0/96.
var mappedV4 = netip.MustParsePrefix("::ffff:0:0/96")

// canonicalACL returns an acl admitting the same addresses under
// credential.IPAllowed, where every IPv4 address is matched by IPv4 prefixes
// only: an IPv6 prefix inside ::ffff:0:0/96 becomes the IPv4 prefix it maps,
// and one that covers all of ::ffff:0:0/96 (such as ::/0) also brings
// 0.0.0.0/0.
func canonicalACL(acl []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(acl)+1)
	for _, pre := range acl {
		pre = pre.Masked()
		switch {
		case !pre.Addr().Is6():
			out = append(out, pre)
		case pre.Bits() >= 96 && mappedV4.Contains(pre.Addr()):
			out = append(out, netip.PrefixFrom(pre.Addr().Unmap(), pre.Bits()-96))
		case pre.Bits() <= 96 && pre.Contains(mappedV4.Addr()):
			out = append(out, pre, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
		default:
			out = append(out, pre)
		}
	}
	return out
}

// intersectPrefixes returns the prefixes of addresses in both a and b. Two
// prefixes overlap only when one contains the other, so each overlapping pair
// contributes the narrower one.
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range a {
		for _, y := range b {
			if !x.Overlaps(y) {
				continue
			}
			if y.Bits() > x.Bits() {
				out = append(out, y)
			} else {
				out = append(out, x)
			}
		}
	}
	// Deduplicate, keeping first occurrences in order.
	seen := make(map[netip.Prefix]bool, len(out))
	return slices.DeleteFunc(out, func(p netip.Prefix) bool {
		dup := seen[p]
		seen[p] = true
		return dup
	})
}
