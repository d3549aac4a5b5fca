package token_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/macaroon.v2"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// mcClaims are claims() plus a condition, as a macaroon carries them.
func mcClaims() token.Claims {
	c := claims()
	c.Conditions = map[string]string{"env": "prod"}
	return c
}

// sampleCaveats are the caveats MintMacaroon writes for mcClaims, in order:
// the grammar of docs/derived-tokens.md, pinned.
func sampleCaveats() []string {
	return []string{
		"iss = " + issuer,
		"nid = " + string(tenant),
		"akid = " + string(keyID),
		"oid = user-42",
		"vis = secret",
		"iat = 2026-03-01T12:00:00Z",
		"meta = " + b64([]byte(`{"plan":"pro","region":"eu"}`)),
		"cst = " + b64([]byte(`{"level":3,"team":"platform"}`)),
		"tty = derived",
		"exp < 2026-03-01T13:00:00Z",
		"nbf >= 2026-03-01T12:00:00Z",
		"scp = keys:read,keys:write,billing:read",
		"acl = 10.0.0.0/8,2001:db8::/32",
		"cond env = prod",
	}
}

// mintRaw mints a macaroon with the library directly, to forge caveat lists
// that MintMacaroon never writes, signed with the real root key.
func mintRaw(t testing.TB, key []byte, loc string, caveats []string) string {
	t.Helper()
	m, err := macaroon.New(key, []byte(tokenID), loc, macaroon.V2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caveats {
		if err := m.AddFirstPartyCaveat([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	return wire(t, m)
}

func wire(t testing.TB, m *macaroon.Macaroon) string {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return prefix + "_v1_" + b64(b)
}

// unwire decodes a wire macaroon with the library.
func unwire(t testing.TB, tok string) *macaroon.Macaroon {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, prefix+"_v1_"))
	if err != nil {
		t.Fatal(err)
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &m
}

func verifyMC(tok string, o token.VerifyOptions) (token.Claims, error) {
	return token.VerifyMacaroon(tok, [][]byte{rootKey}, []string{prefix}, o)
}

func TestMintMacaroon_RoundTrip(t *testing.T) {
	t.Parallel()
	tok := mustMint(t, mcClaims())
	if !token.LooksMacaroon(tok, []string{prefix}) || token.LooksJWT(tok) {
		t.Fatalf("routing of %q is wrong", tok)
	}
	got, err := verifyMC(tok, opts())
	if err != nil {
		t.Fatalf("VerifyMacaroon: %v", err)
	}
	if diff := cmp.Diff(mcClaims(), got, cmpPrefixes); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestMintMacaroon_Wire(t *testing.T) {
	t.Parallel()
	tok := mustMint(t, mcClaims())
	if !strings.HasPrefix(tok, "mc_v1_") {
		t.Fatalf("token %q lacks the prefix", tok)
	}
	bin, err := base64.RawURLEncoding.Strict().DecodeString(tok[len("mc_v1_"):])
	if err != nil {
		t.Fatalf("body is not unpadded base64url: %v", err)
	}
	// V2 binary: version, location packet (the issuer), identifier packet
	// (the jti), as in Talos's own tokens.
	head := append([]byte{2, 1, byte(len(issuer))}, issuer...)
	head = append(append(head, 2, byte(len(tokenID))), tokenID...)
	if !bytes.HasPrefix(bin, head) {
		t.Errorf("binary starts % x, want % x", bin[:len(head)], head)
	}
	m := unwire(t, tok)
	var got []string
	for _, c := range m.Caveats() {
		got = append(got, string(c.Id))
	}
	if diff := cmp.Diff(sampleCaveats(), got); diff != "" {
		t.Errorf("caveats (-want +got):\n%s", diff)
	}
	// Minimal claims write only the required caveats and an empty scope list.
	m = unwire(t, mustMint(t, token.Claims{ID: tokenID, Subject: keyID, Issuer: issuer, Tenant: tenant, IssuedAt: now, Expiry: now.Add(time.Minute)}))
	got = got[:0]
	for _, c := range m.Caveats() {
		got = append(got, string(c.Id))
	}
	want := []string{"iss = " + issuer, "nid = " + string(tenant), "akid = " + string(keyID), "iat = 2026-03-01T12:00:00Z", "tty = derived", "exp < 2026-03-01T12:01:00Z", "scp = "}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("minimal caveats (-want +got):\n%s", diff)
	}
}

func TestMintMacaroon_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		key    []byte
		prefix string
		edit   func(*token.Claims)
	}{
		{name: "short root key", key: rootKey[:31]},
		{name: "no prefix", prefix: "-"},
		{name: "prefix with hyphen", prefix: "m-c"},
		{name: "prefix with _v1_", prefix: "a_v1_b"},
		{name: "prefix of 17", prefix: strings.Repeat("a", 17)},
		{name: "scope with comma", edit: func(c *token.Claims) { c.Scopes = []string{"a,b"} }},
		{name: "scope with space", edit: func(c *token.Claims) { c.Scopes = []string{"a b"} }},
		{name: "audience with comma", edit: func(c *token.Claims) { c.Audiences = []string{"a,b"} }},
		{name: "condition key with space", edit: func(c *token.Claims) { c.Conditions = map[string]string{"a b": "c"} }},
		{name: "condition value with newline", edit: func(c *token.Claims) { c.Conditions = map[string]string{"a": "b\nexp < 2099-01-01T00:00:00Z"} }},
		{name: "issuer with newline", edit: func(c *token.Claims) { c.Issuer = "a\nb" }},
		{name: "no tenant", edit: func(c *token.Claims) { c.Tenant = "" }},
		{name: "expiry after 9999", edit: func(c *token.Claims) { c.Expiry = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{name: "custom claims over 4 KiB", edit: func(c *token.Claims) { c.Custom = map[string]any{"x": strings.Repeat("x", 4097)} }},
		{name: "token over 8 KiB", edit: func(c *token.Claims) {
			c.Custom = map[string]any{"x": strings.Repeat("x", 4000)}
			c.Scopes = []string{strings.Repeat("s", 4000)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key, p, c := rootKey, prefix, mcClaims()
			if tt.key != nil {
				key = tt.key
			}
			if tt.prefix == "-" {
				p = ""
			} else if tt.prefix != "" {
				p = tt.prefix
			}
			if tt.edit != nil {
				tt.edit(&c)
			}
			_, err := token.MintMacaroon(key, p, c)
			wantErr(t, err, credential.ErrInvalidArgument, "")
		})
	}
}

func TestMacaroonRootKey(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte("s"), 32)
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("talos/macaroon/v1/root-key"))
	if got := token.MacaroonRootKey(secret); !bytes.Equal(got, h.Sum(nil)) {
		t.Errorf("MacaroonRootKey = %x, want HMAC-SHA256(secret, label) %x", got, h.Sum(nil))
	}
	if bytes.Equal(token.MacaroonRootKey(secret), token.MacaroonRootKey(bytes.Repeat([]byte("t"), 32))) {
		t.Error("two secrets derive one root key")
	}
}

func TestVerifyMacaroon_RootKeysAndPrefixes(t *testing.T) {
	t.Parallel()
	retiredKey := token.MacaroonRootKey([]byte("an old secret of at least 32 bytes"))
	tok, err := token.MintMacaroon(retiredKey, "old", mcClaims())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		keys     [][]byte
		prefixes []string
		sentinel error
	}{
		{name: "retired key and prefix", keys: [][]byte{rootKey, retiredKey}, prefixes: []string{prefix, "old"}},
		{name: "retired key first", keys: [][]byte{retiredKey, rootKey}, prefixes: []string{"old"}},
		{name: "key no longer active", keys: [][]byte{rootKey}, prefixes: []string{prefix, "old"}, sentinel: credential.ErrUnauthenticated},
		{name: "no keys", keys: nil, prefixes: []string{"old"}, sentinel: credential.ErrUnauthenticated},
		{name: "empty key", keys: [][]byte{{}}, prefixes: []string{"old"}, sentinel: credential.ErrUnauthenticated},
		{name: "prefix no longer accepted", keys: [][]byte{retiredKey}, prefixes: []string{prefix}, sentinel: credential.ErrMalformed},
		{name: "no prefixes", keys: [][]byte{retiredKey}, sentinel: credential.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := token.VerifyMacaroon(tok, tt.keys, tt.prefixes, opts())
			if tt.sentinel == nil {
				if err != nil {
					t.Fatalf("VerifyMacaroon: %v", err)
				}
				if diff := cmp.Diff(mcClaims(), got, cmpPrefixes); diff != "" {
					t.Errorf("claims (-want +got):\n%s", diff)
				}
				return
			}
			wantErr(t, err, tt.sentinel, "")
		})
	}
}

// TestAttenuate: attenuation narrows scopes, times, CIDRs and audiences, adds
// conditions, and never widens anything.
func TestAttenuate(t *testing.T) {
	t.Parallel()
	tok := mustMint(t, mcClaims())
	ip := func(s string) func(*token.VerifyOptions) {
		return func(o *token.VerifyOptions) { o.ClientIP = netip.MustParseAddr(s) }
	}
	at := func(d time.Duration) func(*token.VerifyOptions) {
		return func(o *token.VerifyOptions) { o.Now = now.Add(d); o.ClockSkew = 0 }
	}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	tests := []struct {
		name     string
		caveats  [][]token.Caveat // one Attenuate call each
		opt      func(*token.VerifyOptions)
		edit     func(*token.Claims) // from mcClaims to the expected claims
		sentinel error
		reason   string
	}{
		{name: "nothing", caveats: [][]token.Caveat{{}}},
		{name: "drop scopes", caveats: [][]token.Caveat{{token.Scopes("keys:read")}},
			edit: func(c *token.Claims) { c.Scopes = []string{"keys:read"} }},
		{name: "cannot add a scope", caveats: [][]token.Caveat{{token.Scopes("keys:read", "admin")}},
			edit: func(c *token.Claims) { c.Scopes = []string{"keys:read"} }},
		{name: "scope caveats intersect", caveats: [][]token.Caveat{{token.Scopes("keys:read", "keys:write")}, {token.Scopes("billing:read", "keys:write")}},
			edit: func(c *token.Claims) { c.Scopes = []string{"keys:write"} }},
		{name: "no scopes", caveats: [][]token.Caveat{{token.Scopes()}, {token.Scopes("keys:read")}},
			edit: func(c *token.Claims) { c.Scopes = nil }},
		{name: "earlier expiry", caveats: [][]token.Caveat{{token.Expires(now.Add(10 * time.Minute))}},
			edit: func(c *token.Claims) { c.Expiry = now.Add(10 * time.Minute) }},
		{name: "earlier expiry applies", caveats: [][]token.Caveat{{token.Expires(now.Add(10 * time.Minute))}}, opt: at(10 * time.Minute),
			sentinel: credential.ErrExpired},
		{name: "later expiry does not extend", caveats: [][]token.Caveat{{token.Expires(now.Add(48 * time.Hour))}}},
		{name: "later expiry does not apply", caveats: [][]token.Caveat{{token.Expires(now.Add(48 * time.Hour))}}, opt: at(time.Hour),
			sentinel: credential.ErrExpired},
		{name: "later not-before", caveats: [][]token.Caveat{{token.NotBefore(now.Add(30 * time.Minute))}}, opt: at(30 * time.Minute),
			edit: func(c *token.Claims) { c.NotBefore = now.Add(30 * time.Minute) }},
		{name: "later not-before applies", caveats: [][]token.Caveat{{token.NotBefore(now.Add(30 * time.Minute))}}, opt: at(29 * time.Minute),
			sentinel: credential.ErrExpired},
		{name: "earlier not-before does not widen", caveats: [][]token.Caveat{{token.NotBefore(now.Add(-time.Hour))}}, opt: at(-time.Minute),
			sentinel: credential.ErrExpired},
		{name: "narrower CIDR", caveats: [][]token.Caveat{{token.CIDRs(pfx("10.1.0.0/16")...)}}, opt: ip("10.1.200.1"),
			edit: func(c *token.Claims) { c.AllowedCIDRs = pfx("10.1.0.0/16") }},
		{name: "narrower CIDR applies", caveats: [][]token.Caveat{{token.CIDRs(pfx("10.1.0.0/16")...)}}, opt: ip("10.2.0.1"),
			sentinel: credential.ErrForbidden, reason: "IP_NOT_ALLOWED"},
		{name: "wider CIDR does not widen", caveats: [][]token.Caveat{{token.CIDRs(pfx("0.0.0.0/0", "::/0")...)}},
			edit: func(c *token.Claims) { c.AllowedCIDRs = pfx("10.0.0.0/8", "2001:db8::/32") }},
		{name: "wider CIDR does not apply", caveats: [][]token.Caveat{{token.CIDRs(pfx("0.0.0.0/0")...)}}, opt: ip("192.0.2.1"),
			sentinel: credential.ErrForbidden, reason: "IP_NOT_ALLOWED"},
		{name: "CIDR intersection", caveats: [][]token.Caveat{{token.CIDRs(pfx("10.1.0.0/16", "10.2.0.0/16", "192.0.2.0/24")...)}}, opt: ip("10.2.0.9"),
			edit: func(c *token.Claims) { c.AllowedCIDRs = pfx("10.1.0.0/16", "10.2.0.0/16") }},
		{name: "disjoint CIDR", caveats: [][]token.Caveat{{token.CIDRs(pfx("192.168.0.0/16")...)}}, opt: ip("192.168.0.1"),
			sentinel: credential.ErrForbidden, reason: "IP_NOT_ALLOWED"},
		{name: "audience binding", caveats: [][]token.Caveat{{token.Audiences("api", "web")}},
			opt:  func(o *token.VerifyOptions) { o.ExpectedAudiences = []string{"web"} },
			edit: func(c *token.Claims) { c.Audiences = []string{"api", "web"} }},
		{name: "audience binding applies", caveats: [][]token.Caveat{{token.Audiences("api")}},
			sentinel: credential.ErrForbidden, reason: "AUDIENCE_MISMATCH"},
		{name: "audiences intersect", caveats: [][]token.Caveat{{token.Audiences("api", "web")}, {token.Audiences("web", "cli")}},
			opt:  func(o *token.VerifyOptions) { o.ExpectedAudiences = []string{"web"} },
			edit: func(c *token.Claims) { c.Audiences = []string{"web"} }},
		{name: "disjoint audiences", caveats: [][]token.Caveat{{token.Audiences("api")}, {token.Audiences("web")}},
			opt:      func(o *token.VerifyOptions) { o.ExpectedAudiences = []string{"api", "web"} },
			sentinel: credential.ErrForbidden, reason: "AUDIENCE_MISMATCH"},
		{name: "condition reported", caveats: [][]token.Caveat{{token.Condition("method", "GET"), token.Condition("env", "prod")}},
			edit: func(c *token.Claims) { c.Conditions = map[string]string{"env": "prod", "method": "GET"} }},
		{name: "conflicting condition", caveats: [][]token.Caveat{{token.Condition("env", "dev")}},
			sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "everything at once", caveats: [][]token.Caveat{
			{token.Scopes("keys:read", "keys:write"), token.Expires(now.Add(30 * time.Minute))},
			{token.CIDRs(pfx("10.1.2.0/24")...), token.Audiences("api"), token.Scopes("keys:read")},
		},
			opt: func(o *token.VerifyOptions) { o.ExpectedAudiences = []string{"api"} },
			edit: func(c *token.Claims) {
				c.Scopes, c.Expiry, c.AllowedCIDRs, c.Audiences = []string{"keys:read"}, now.Add(30*time.Minute), pfx("10.1.2.0/24"), []string{"api"}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tok
			for _, cs := range tt.caveats {
				got = mustAttenuate(t, got, cs...)
			}
			if !strings.HasPrefix(got, prefix+"_v1_") {
				t.Fatalf("attenuated token %q lost its prefix", got)
			}
			o := opts()
			if tt.opt != nil {
				tt.opt(&o)
			}
			c, err := verifyMC(got, o)
			if tt.sentinel != nil {
				wantErr(t, err, tt.sentinel, tt.reason)
				return
			}
			if err != nil {
				t.Fatalf("VerifyMacaroon: %v", err)
			}
			want := mcClaims()
			if tt.edit != nil {
				tt.edit(&want)
			}
			if diff := cmp.Diff(want, c, cmpPrefixes); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAttenuate_PrefixWithUnderscore(t *testing.T) {
	t.Parallel()
	tok, err := token.MintMacaroon(rootKey, "my_mc", mcClaims())
	if err != nil {
		t.Fatal(err)
	}
	got := mustAttenuate(t, tok, token.Scopes("keys:read"))
	if !strings.HasPrefix(got, "my_mc_v1_") {
		t.Fatalf("prefix lost: %q", got)
	}
	c, err := token.VerifyMacaroon(got, [][]byte{rootKey}, []string{"my_mc"}, opts())
	if err != nil {
		t.Fatalf("VerifyMacaroon: %v", err)
	}
	if diff := cmp.Diff([]string{"keys:read"}, c.Scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
}

func TestAttenuate_Invalid(t *testing.T) {
	t.Parallel()
	tok := mustMint(t, mcClaims())
	tests := []struct {
		name     string
		tok      string
		caveats  []token.Caveat
		sentinel error
	}{
		{"zero caveat", tok, []token.Caveat{{}}, credential.ErrInvalidArgument},
		{"zero expiry", tok, []token.Caveat{token.Expires(time.Time{})}, credential.ErrInvalidArgument},
		{"expiry after 9999", tok, []token.Caveat{token.Expires(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, credential.ErrInvalidArgument},
		{"scope with comma", tok, []token.Caveat{token.Scopes("a,b")}, credential.ErrInvalidArgument},
		{"empty scope", tok, []token.Caveat{token.Scopes("")}, credential.ErrInvalidArgument},
		{"no audience", tok, []token.Caveat{token.Audiences()}, credential.ErrInvalidArgument},
		{"no CIDR", tok, []token.Caveat{token.CIDRs()}, credential.ErrInvalidArgument},
		{"257 scopes", tok, []token.Caveat{token.Scopes(strings.Split(strings.Repeat("a,", 256)+"a", ",")...)}, credential.ErrInvalidArgument},
		{"invalid CIDR", tok, []token.Caveat{token.CIDRs(netip.Prefix{})}, credential.ErrInvalidArgument},
		{"condition key with =", tok, []token.Caveat{token.Condition("a=b", "c")}, credential.ErrInvalidArgument},
		{"condition value with newline", tok, []token.Caveat{token.Condition("a", "b\nc")}, credential.ErrInvalidArgument},
		{"too long", tok, []token.Caveat{token.Condition("a", strings.Repeat("x", 1024)), token.Condition("b", strings.Repeat("x", 1024)),
			token.Condition("c", strings.Repeat("x", 1024)), token.Condition("d", strings.Repeat("x", 1024)), token.Condition("e", strings.Repeat("x", 1024)),
			token.Condition("f", strings.Repeat("x", 1024))}, credential.ErrInvalidArgument},
		{"not a macaroon", "mc_v1_garbage", nil, credential.ErrMalformed},
		{"a JWT", mustSign(t, newTestSigner(t, token.EdDSA), claims()), nil, credential.ErrMalformed},
		{"no prefix", tok[len("mc_v1_"):], nil, credential.ErrMalformed},
		{"1 MB", "mc_v1_" + strings.Repeat("A", 1<<20), nil, credential.ErrMalformed},
		{"third-party caveat", withThirdParty(t, tok), nil, credential.ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := token.Attenuate(tt.tok, tt.caveats...)
			wantErr(t, err, tt.sentinel, "")
		})
	}
}

func withThirdParty(t testing.TB, tok string) string {
	t.Helper()
	m := unwire(t, tok)
	if err := m.AddThirdPartyCaveat(bytes.Repeat([]byte{1}, 32), []byte("third-party-id"), "https://third.example"); err != nil {
		t.Fatal(err)
	}
	return wire(t, m)
}

// TestVerifyMacaroon_BadInput covers the macaroon bad inputs of issue 3 and
// the strictness of the caveat checker.
func TestVerifyMacaroon_BadInput(t *testing.T) {
	t.Parallel()
	good := mustMint(t, mcClaims())
	caveats := sampleCaveats()
	// replace returns the sample caveats with caveat i replaced by c (or
	// dropped when c is empty).
	replace := func(i int, c string) []string {
		out := append([]string(nil), caveats[:i]...)
		if c != "" {
			out = append(out, c)
		}
		return append(out, caveats[i+1:]...)
	}
	insert := func(i int, c string) []string {
		out := append([]string(nil), caveats[:i]...)
		return append(append(out, c), caveats[i:]...)
	}
	appendOffline := func(c string) string {
		m := unwire(t, good)
		if err := m.AddFirstPartyCaveat([]byte(c)); err != nil {
			t.Fatal(err)
		}
		return wire(t, m)
	}
	bin := func(edit func(b []byte) []byte) string {
		b, _ := base64.RawURLEncoding.DecodeString(good[len("mc_v1_"):])
		return "mc_v1_" + b64(edit(append([]byte(nil), b...)))
	}
	const tty, exp = 8, 9 // indexes in sampleCaveats

	tests := []struct {
		name     string
		tok      string
		opt      func(*token.VerifyOptions)
		sentinel error
		reason   string
	}{
		{name: "wrong root key", tok: mustMintWith(t, token.MacaroonRootKey([]byte("another secret of at least 32 bytes")), mcClaims()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "another tenant", tok: good, opt: func(o *token.VerifyOptions) { o.Tenant = credential.DefaultTenant }, sentinel: credential.ErrNotFound, reason: "TOKEN_NOT_FOUND"},
		{name: "expired beyond skew", tok: good, opt: func(o *token.VerifyOptions) { o.Now = now.Add(time.Hour + skew) }, sentinel: credential.ErrExpired},
		{name: "not yet valid beyond skew", tok: good, opt: func(o *token.VerifyOptions) { o.Now = now.Add(-skew - time.Second) }, sentinel: credential.ErrExpired},
		{name: "issuer not accepted", tok: good, opt: func(o *token.VerifyOptions) { o.Issuers = []string{"https://other.example"} }, sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "client IP outside acl", tok: good, opt: func(o *token.VerifyOptions) { o.ClientIP = netip.MustParseAddr("198.51.100.1") }, sentinel: credential.ErrForbidden, reason: "IP_NOT_ALLOWED"},
		{name: "1 MB token", tok: "mc_v1_" + strings.Repeat("A", 1<<20), sentinel: credential.ErrMalformed},
		{name: "unknown prefix", tok: "xx" + good[2:], sentinel: credential.ErrMalformed},
		{name: "empty", tok: "", sentinel: credential.ErrMalformed},
		{name: "empty body", tok: "mc_v1_", sentinel: credential.ErrMalformed},
		{name: "not base64url", tok: good[:20] + "+" + good[21:], sentinel: credential.ErrMalformed},
		{name: "padding", tok: good + "=", sentinel: credential.ErrMalformed},
		{name: "newline", tok: good[:20] + "\n" + good[20:], sentinel: credential.ErrMalformed},
		{name: "trailing data", tok: bin(func(b []byte) []byte { return append(b, 0) }), sentinel: credential.ErrMalformed},
		{name: "V1 binary format", tok: v1Format(t, good), sentinel: credential.ErrMalformed},
		{name: "JSON format", tok: "mc_v1_" + b64([]byte(`{"c":[],"l":"x","i":"y","s64":"AAAA"}`)), sentinel: credential.ErrMalformed},
		{name: "location changed", tok: bin(func(b []byte) []byte { return bytes.Replace(b, []byte("talos.example"), []byte("evil0.example"), 1) }), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "unknown caveat", tok: mintRaw(t, rootKey, issuer, append(caveats, "foo = bar")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "unknown caveat added offline", tok: appendOffline("admin = true"), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "actor changed offline", tok: appendOffline("oid = admin"), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "tenant added offline", tok: appendOffline("nid = " + string(tenant)), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "metadata added offline", tok: appendOffline("meta = " + b64([]byte(`{"role":"admin"}`))), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "custom claims added offline", tok: appendOffline("cst = " + b64([]byte(`{"role":"admin"}`))), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "second seal offline", tok: appendOffline("tty = derived"), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "third-party caveat", tok: withThirdParty(t, good), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "identity caveat twice", tok: mintRaw(t, rootKey, issuer, insert(3, "akid = other")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no seal", tok: mintRaw(t, rootKey, issuer, replace(tty, "")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "other token type", tok: mintRaw(t, rootKey, issuer, replace(tty, "tty = access")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no expiry", tok: mintRaw(t, rootKey, issuer, replace(exp, "")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no tenant", tok: mintRaw(t, rootKey, issuer, replace(1, "")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no issuer", tok: mintRaw(t, rootKey, issuer, replace(0, "")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "expiry with the wrong operator", tok: mintRaw(t, rootKey, issuer, replace(exp, "exp = 2026-03-01T13:00:00Z")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "expiry not RFC 3339", tok: mintRaw(t, rootKey, issuer, replace(exp, "exp < 1772370000")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "double space", tok: mintRaw(t, rootKey, issuer, replace(11, "scp  = keys:read")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "empty CIDR list", tok: mintRaw(t, rootKey, issuer, replace(12, "acl = ")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "bad CIDR", tok: mintRaw(t, rootKey, issuer, replace(12, "acl = 10.0.0.0/33")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "bad visibility", tok: mintRaw(t, rootKey, issuer, replace(4, "vis = hidden")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "metadata not base64", tok: mintRaw(t, rootKey, issuer, replace(6, "meta = {}")), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "location differs from iss", tok: mintRaw(t, rootKey, "https://elsewhere.example", caveats), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "empty caveat", tok: appendOffline(""), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "scope list over 256", tok: appendOffline("scp = " + strings.Repeat("a,", 256) + "a"), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := opts()
			if tt.opt != nil {
				tt.opt(&o)
			}
			got, err := verifyMC(tt.tok, o)
			wantErr(t, err, tt.sentinel, tt.reason)
			if diff := cmp.Diff(token.Claims{}, got); diff != "" {
				t.Errorf("claims returned with an error:\n%s", diff)
			}
			if tt.tok != "" && strings.Contains(err.Error(), tt.tok) {
				t.Errorf("error %q carries the token", err)
			}
		})
	}
	// The forged lists above differ from the real one only where intended.
	if _, err := verifyMC(mintRaw(t, rootKey, issuer, caveats), opts()); err != nil {
		t.Fatalf("the sample caveats themselves do not verify: %v", err)
	}
}

func mustMintWith(t testing.TB, key []byte, c token.Claims) string {
	t.Helper()
	tok, err := token.MintMacaroon(key, prefix, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func v1Format(t testing.TB, tok string) string {
	t.Helper()
	m := unwire(t, tok)
	m1, err := macaroon.New(rootKey, m.Id(), m.Location(), macaroon.V1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Caveats() {
		if err := m1.AddFirstPartyCaveat(c.Id); err != nil {
			t.Fatal(err)
		}
	}
	return wire(t, m1)
}

// TestVerifyMacaroon_Mutations truncates a sample at every length and flips
// every byte of it, as text and as binary: nothing but the original verifies,
// and every rejection is malformed or SIGNATURE_INVALID.
func TestVerifyMacaroon_Mutations(t *testing.T) {
	t.Parallel()
	good := mustMint(t, mcClaims())
	check := func(t *testing.T, what string, tok string) {
		t.Helper()
		if tok == good {
			return
		}
		_, err := verifyMC(tok, opts())
		if err == nil {
			t.Fatalf("%s: mutated token accepted", what)
		}
		if !errors.Is(err, credential.ErrMalformed) && !errors.Is(err, credential.ErrUnauthenticated) {
			t.Fatalf("%s: err = %v, want malformed or unauthenticated", what, err)
		}
	}
	t.Run("truncated", func(t *testing.T) {
		t.Parallel()
		for n := range len(good) {
			check(t, "truncated", good[:n])
		}
	})
	t.Run("text flipped", func(t *testing.T) {
		t.Parallel()
		for i := range len(good) {
			for _, mask := range []byte{0x01, 0x02, 0x20, 0x80, 0xff} {
				b := []byte(good)
				b[i] ^= mask
				check(t, "text flip", string(b))
			}
		}
	})
	t.Run("binary flipped", func(t *testing.T) {
		t.Parallel()
		raw, _ := base64.RawURLEncoding.DecodeString(good[len("mc_v1_"):])
		for i := range raw {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				b := append([]byte(nil), raw...)
				b[i] ^= mask
				check(t, "binary flip", "mc_v1_"+b64(b))
			}
		}
	})
	t.Run("binary truncated", func(t *testing.T) {
		t.Parallel()
		raw, _ := base64.RawURLEncoding.DecodeString(good[len("mc_v1_"):])
		for n := range raw {
			check(t, "binary truncation", "mc_v1_"+b64(raw[:n]))
		}
	})
}

func TestLooksMacaroon(t *testing.T) {
	t.Parallel()
	prefixes := []string{"mc", "old_mc"}
	tests := []struct {
		s    string
		want bool
	}{
		{"mc_v1_AgE", true},
		{"old_mc_v1_AgE", true},
		{"mc_v1_", true},
		{"mc_v2_AgE", false},
		{"mcx_v1_AgE", false},
		{"talos_v1_AgE", false},
		{"eyJa.b.c", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := token.LooksMacaroon(tt.s, prefixes); got != tt.want {
			t.Errorf("LooksMacaroon(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
	if token.LooksMacaroon("_v1_x", []string{""}) {
		t.Error("an empty prefix matched")
	}
}

func TestCaveat_String(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    token.Caveat
		want string
	}{
		{token.Expires(time.Date(2026, 3, 1, 13, 0, 0, 999, time.FixedZone("X", 3600))), "exp < 2026-03-01T12:00:00Z"},
		{token.NotBefore(now), "nbf >= 2026-03-01T12:00:00Z"},
		{token.Scopes("a", "b:c"), "scp = a,b:c"},
		{token.Scopes(), "scp = "},
		{token.Audiences("https://api.example"), "aud = https://api.example"},
		{token.CIDRs(netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("2001:db8::/32")), "acl = 10.0.0.0/8,2001:db8::/32"},
		{token.Condition("http.method", "GET = POST"), "cond http.method = GET = POST"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("caveat = %q, want %q", got, tt.want)
		}
	}
}

// TestAttenuate_CIDRsLeftToTheCaller: with SkipIPCheck (the sidecar's mode,
// and the control plane's answer to a sidecar) the caller checks
// Claims.AllowedCIDRs, the intersection of every acl caveat. A holder whose
// token is limited to 10.0.0.0/8 appended an acl of their own address
// outside it: the intersection was empty, which AllowedCIDRs reads as
// unrestricted, so the token passed from anywhere. And an IPv4-mapped
// spelling of an IPv4 range intersected with nothing (netip's Overlaps keeps
// the families apart) although the same addresses pass both.
func TestAttenuate_CIDRsLeftToTheCaller(t *testing.T) {
	t.Parallel()
	tok := mustMint(t, mcClaims()) // acl = 10.0.0.0/8,2001:db8::/32
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	tests := []struct {
		name    string
		acls    [][]netip.Prefix
		client  string
		allowed bool // whether credential.IPAllowed(c.AllowedCIDRs, client) must hold
		none    bool // the token must be refused outright
	}{
		{name: "disjoint", acls: [][]netip.Prefix{pfx("203.0.113.0/24")}, client: "203.0.113.5", none: true},
		{name: "disjoint twice", acls: [][]netip.Prefix{pfx("10.1.0.0/16"), pfx("10.2.0.0/16")}, client: "8.8.8.8", none: true},
		{name: "mapped spelling", acls: [][]netip.Prefix{pfx("::ffff:10.1.0.0/112")}, client: "10.1.2.3", allowed: true},
		{name: "mapped spelling applies", acls: [][]netip.Prefix{pfx("::ffff:10.1.0.0/112")}, client: "10.2.0.1"},
		{name: "mapped outside", acls: [][]netip.Prefix{pfx("::ffff:192.0.2.0/120")}, client: "192.0.2.1", none: true},
		{name: "all of IPv6", acls: [][]netip.Prefix{pfx("::/0")}, client: "10.9.9.9", allowed: true},
		{name: "all of IPv6 keeps v6 bound", acls: [][]netip.Prefix{pfx("::/0")}, client: "2001:db9::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tok
			for _, acl := range tt.acls {
				got = mustAttenuate(t, got, token.CIDRs(acl...))
			}
			o := opts()
			o.ClientIP = netip.MustParseAddr(tt.client)
			strict, strictErr := verifyMC(got, o)
			o.SkipIPCheck = true
			c, err := verifyMC(got, o)
			if tt.none {
				wantErr(t, err, credential.ErrForbidden, "IP_NOT_ALLOWED")
				wantErr(t, strictErr, credential.ErrForbidden, "IP_NOT_ALLOWED")
				return
			}
			if err != nil {
				t.Fatalf("VerifyMacaroon (SkipIPCheck): %v", err)
			}
			if ok := credential.IPAllowed(c.AllowedCIDRs, o.ClientIP); ok != tt.allowed {
				t.Errorf("IPAllowed(%v, %v) = %v, want %v", c.AllowedCIDRs, o.ClientIP, ok, tt.allowed)
			}
			// The caller's check and the verifier's agree.
			if (strictErr == nil) != tt.allowed {
				t.Errorf("VerifyMacaroon without SkipIPCheck: %v (claims %v), want allowed=%v", strictErr, strict.AllowedCIDRs, tt.allowed)
			}
		})
	}
}
