package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

func TestSignJWT_RoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			s := newTestSigner(t, alg)
			tok := mustSign(t, s, claims())
			if !token.LooksJWT(tok) {
				t.Fatalf("LooksJWT(%q) = false", tok)
			}
			got, err := token.VerifyJWT(tok, s.KeySet(now), opts())
			if err != nil {
				t.Fatalf("VerifyJWT: %v", err)
			}
			if got.SigningKeyID == "" || !s.KeySet(now).Has(got.SigningKeyID) {
				t.Errorf("SigningKeyID %q is not a key of the set", got.SigningKeyID)
			}
			got.SigningKeyID = ""
			if diff := cmp.Diff(claims(), got, cmpPrefixes); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpPrefixes = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

// TestSignJWT_Wire checks the header and payload members other
// implementations read.
func TestSignJWT_Wire(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			k := signingKey(t, alg)
			tok := mustSign(t, mustSigner(t, []token.SigningKey{k}, ""), claims())
			parts := strings.Split(tok, ".")
			var header, body map[string]any
			mustUnmarshalB64(t, parts[0], &header)
			mustUnmarshalB64(t, parts[1], &body)
			if diff := cmp.Diff(map[string]any{"alg": alg, "kid": k.ID, "typ": "JWT"}, header); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			want := map[string]any{
				"jti": tokenID, "sub": string(keyID), "akid": string(keyID), "pid": string(keyID),
				"iss": issuer, "iat": float64(now.Unix()), "nbf": float64(now.Unix()),
				"exp": float64(now.Add(time.Hour).Unix()), "nid": string(tenant), "tty": "derived",
				"oid": "user-42", "scp": []any{"keys:read", "keys:write", "billing:read"},
				"meta": map[string]any{"plan": "pro", "region": "eu"}, "vis": "secret",
				"acl": []any{"10.0.0.0/8", "2001:db8::/32"}, "team": "platform", "level": float64(3),
			}
			if diff := cmp.Diff(want, body); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
}

func mustUnmarshalB64(t *testing.T, s string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestSignJWT_MinimalClaims(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	c := token.Claims{Subject: keyID, Issuer: issuer, Tenant: tenant, IssuedAt: now, Expiry: now.Add(time.Minute)}
	got, err := token.VerifyJWT(mustSign(t, s, c), s.KeySet(now), token.VerifyOptions{Now: now, Tenant: tenant, Issuers: []string{issuer}})
	if err != nil {
		t.Fatalf("VerifyJWT: %v", err)
	}
	if got.ID == "" {
		t.Error("no jti was generated")
	}
	c.ID = got.ID
	c.SigningKeyID = got.SigningKeyID
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestSignJWT_ReservedCustomClaimsStripped(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	c := claims()
	c.Custom = map[string]any{"team": "platform"}
	for _, name := range []string{"jti", "sub", "iss", "aud", "iat", "exp", "nbf", "nid", "akid", "pid", "tty", "oid", "scp", "scope", "meta", "vis", "acl"} {
		if !token.ReservedClaim(name) {
			t.Errorf("ReservedClaim(%q) = false", name)
		}
		c.Custom[name] = "attacker"
	}
	got, err := token.VerifyJWT(mustSign(t, s, c), s.KeySet(now), opts())
	if err != nil {
		t.Fatalf("VerifyJWT: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"team": "platform"}, got.Custom); diff != "" {
		t.Errorf("custom (-want +got):\n%s", diff)
	}
	if got.Subject != keyID || got.Tenant != tenant || got.Issuer != issuer {
		t.Errorf("a custom claim overrode a reserved one: %+v", got)
	}
}

func TestSignJWT_Invalid(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	tests := []struct {
		name string
		edit func(*token.Claims)
	}{
		{"no subject", func(c *token.Claims) { c.Subject = "" }},
		{"no issuer", func(c *token.Claims) { c.Issuer = "" }},
		{"no tenant", func(c *token.Claims) { c.Tenant = "" }},
		{"no expiry", func(c *token.Claims) { c.Expiry = time.Time{} }},
		{"no issue time", func(c *token.Claims) { c.IssuedAt = time.Time{} }},
		{"expiry before issue", func(c *token.Claims) { c.Expiry = now.Add(-time.Second) }},
		{"expiry before not-before", func(c *token.Claims) { c.NotBefore = now.Add(2 * time.Hour) }},
		{"metadata not an object", func(c *token.Claims) { c.Metadata = json.RawMessage(`[1]`) }},
		{"metadata not JSON", func(c *token.Claims) { c.Metadata = json.RawMessage(`{"a":`) }},
		{"unknown visibility", func(c *token.Claims) { c.Visibility = 9 }},
		{"invalid CIDR", func(c *token.Claims) { c.AllowedCIDRs = []netip.Prefix{{}} }},
		{"empty scope", func(c *token.Claims) { c.Scopes = []string{""} }},
		{"conditions", func(c *token.Claims) { c.Conditions = map[string]string{"env": "prod"} }},
		{"custom claim not JSON", func(c *token.Claims) { c.Custom = map[string]any{"f": func() {}} }},
		{"custom claims over 4 KiB", func(c *token.Claims) {
			c.Custom = map[string]any{"blob": strings.Repeat("x", token.MaxCustomClaimsSize)}
		}},
		{"token over 8 KiB", func(c *token.Claims) {
			c.Metadata = json.RawMessage(`{"blob":"` + strings.Repeat("x", token.MaxTokenSize) + `"}`)
		}},
		{"control character", func(c *token.Claims) { c.ActorID = "a\nb" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := claims()
			tt.edit(&c)
			_, err := s.SignJWT(c)
			wantErr(t, err, credential.ErrInvalidArgument, "")
		})
	}
}

func TestSignJWT_CustomClaimsAtTheLimit(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	c := claims()
	c.Metadata = nil
	c.Custom = map[string]any{"blob": strings.Repeat("x", token.MaxCustomClaimsSize-len(`{"blob":""}`))}
	got, err := token.VerifyJWT(mustSign(t, s, c), s.KeySet(now), opts())
	if err != nil {
		t.Fatalf("VerifyJWT: %v", err)
	}
	if diff := cmp.Diff(c.Custom, got.Custom); diff != "" {
		t.Errorf("custom (-want +got):\n%s", diff)
	}
}

// TestVerifyJWT_BadInput covers every bad input of issue 3 and then some.
func TestVerifyJWT_BadInput(t *testing.T) {
	t.Parallel()
	ed := signingKey(t, token.EdDSA)
	rs := signingKey(t, token.RS256)
	es := signingKey(t, token.ES256)
	s := mustSigner(t, []token.SigningKey{ed, rs, es}, ed.ID)
	ks := s.KeySet(now)
	good := mustSign(t, s, claims())
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "JWT"} }
	with := func(edit func(map[string]any)) map[string]any {
		p := payload()
		edit(p)
		return p
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	at := func(d time.Duration) func(*token.VerifyOptions) {
		return func(o *token.VerifyOptions) { o.Now = now.Add(d) }
	}
	parts := strings.Split(good, ".")

	tests := []struct {
		name     string
		tok      string
		opt      func(*token.VerifyOptions)
		sentinel error
		reason   string
	}{
		{name: "alg none", tok: b64([]byte(`{"alg":"none","kid":"`+ed.ID+`","typ":"JWT"}`)) + "." + parts[1] + ".", sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "alg none without kid", tok: signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"alg": "none"}, payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "EdDSA header, empty signature", tok: parts[0] + "." + parts[1] + ".", sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "alg none with signature", tok: signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr("none", ed.ID), payload()) + "AAAA", sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "alg none in upper case", tok: b64([]byte(`{"alg":"NONE","kid":"`+ed.ID+`"}`)) + "." + parts[1] + "." + parts[2], sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "HS256 keyed with the Ed25519 public key", tok: signRaw(t, jwt.SigningMethodHS256, []byte(edKey.Public().(ed25519.PublicKey)), hdr("HS256", ed.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "HS256 keyed with the RSA public key PEM", tok: signRaw(t, jwt.SigningMethodHS256, publicPEM(t, rsaKey().Public()), hdr("HS256", rs.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "HS256 keyed with the RSA public key DER", tok: signRaw(t, jwt.SigningMethodHS256, publicDER(t, rsaKey().Public()), hdr("HS256", rs.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "HS256 keyed with the EC public key PEM", tok: signRaw(t, jwt.SigningMethodHS256, publicPEM(t, ecKey.Public()), hdr("HS256", es.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "algorithm of another key", tok: signRaw(t, jwt.SigningMethodES256, ecKey, hdr("ES256", ed.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "PS256 with the RSA key", tok: signRaw(t, jwt.SigningMethodPS256, rsaKey(), hdr("PS256", rs.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "unknown kid", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", "nope"), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no kid", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, map[string]any{"alg": "EdDSA"}, payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "signed by another key under our kid", tok: signRaw(t, jwt.SigningMethodEdDSA, other, hdr("EdDSA", ed.ID), payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "payload swapped", tok: parts[0] + "." + b64([]byte(`{"sub":"x"}`)) + "." + parts[2], sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "embedded jwk header", tok: signRaw(t, jwt.SigningMethodEdDSA, other, map[string]any{"alg": "EdDSA", "kid": "attacker",
			"jwk": map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(other.Public().(ed25519.PublicKey))}}, payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "crit header", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, map[string]any{"alg": "EdDSA", "kid": ed.ID, "crit": []string{"exp"}}, payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "typ other than JWT", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, map[string]any{"alg": "EdDSA", "kid": ed.ID, "typ": "at+jwt"}, payload()), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "wrong token type", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["tty"] = "access" })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no token type", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { delete(p, "tty") })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "no expiry", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { delete(p, "exp") })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "akid differs from sub", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["akid"] = "other" })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "bad visibility", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["vis"] = "hidden" })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "bad CIDR", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["acl"] = []string{"10.0.0.0/99"} })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "metadata not an object", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["meta"] = "x" })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "wrong issuer", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["iss"] = "https://evil.example" })), sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "expired beyond skew", tok: good, opt: at(time.Hour + skew), sentinel: credential.ErrExpired},
		{name: "not yet valid beyond skew", tok: good, opt: at(-skew - time.Second), sentinel: credential.ErrExpired},
		{name: "issued in the future", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) {
			delete(p, "nbf")
			p["iat"] = now.Add(skew + time.Minute).Unix()
		})), sentinel: credential.ErrExpired},
		{name: "another tenant", tok: good, opt: func(o *token.VerifyOptions) { o.Tenant = credential.DefaultTenant }, sentinel: credential.ErrNotFound, reason: "TOKEN_NOT_FOUND"},
		{name: "issuer not accepted", tok: good, opt: func(o *token.VerifyOptions) { o.Issuers = []string{"https://other.example"} }, sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
		{name: "client IP outside acl", tok: good, opt: func(o *token.VerifyOptions) { o.ClientIP = netip.MustParseAddr("192.0.2.1") }, sentinel: credential.ErrForbidden, reason: "IP_NOT_ALLOWED"},
		{name: "unknown client IP with acl", tok: good, opt: func(o *token.VerifyOptions) { o.ClientIP = netip.Addr{} }, sentinel: credential.ErrForbidden, reason: "IP_NOT_ALLOWED"},
		{name: "1 MB token", tok: "eyJ" + strings.Repeat("A", 1<<20), sentinel: credential.ErrMalformed},
		{name: "one byte over the limit", tok: good + "." + strings.Repeat("A", token.MaxTokenSize-len(good)), sentinel: credential.ErrMalformed},
		{name: "empty", tok: "", sentinel: credential.ErrMalformed},
		{name: "two segments", tok: parts[0] + "." + parts[1], sentinel: credential.ErrMalformed},
		{name: "four segments", tok: good + ".AAAA", sentinel: credential.ErrMalformed},
		{name: "padding", tok: good + "==", sentinel: credential.ErrMalformed},
		{name: "whitespace", tok: good + "\n", sentinel: credential.ErrMalformed},
		{name: "header not JSON", tok: "eyJub3Q." + parts[1] + "." + parts[2], sentinel: credential.ErrMalformed},
		{name: "payload not JSON", tok: parts[0] + ".bm90IGpzb24." + parts[2], sentinel: credential.ErrMalformed},
		{name: "claim of the wrong JSON type", tok: signRaw(t, jwt.SigningMethodEdDSA, edKey, hdr("EdDSA", ed.ID), with(func(p map[string]any) { p["scp"] = 5 })), sentinel: credential.ErrMalformed},
		{name: "non-canonical base64 signature", tok: nonCanonical(good), sentinel: credential.ErrMalformed},
		{name: "truncated signature", tok: good[:len(good)-2], sentinel: credential.ErrUnauthenticated, reason: signatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := opts()
			if tt.opt != nil {
				tt.opt(&o)
			}
			got, err := token.VerifyJWT(tt.tok, ks, o)
			wantErr(t, err, tt.sentinel, tt.reason)
			if diff := cmp.Diff(token.Claims{}, got); diff != "" {
				t.Errorf("claims returned with an error:\n%s", diff)
			}
			if unknown := tt.name == "unknown kid" || tt.name == "no kid" || tt.name == "embedded jwk header"; unknown != errors.Is(err, token.ErrUnknownKID) {
				t.Errorf("errors.Is(%v, ErrUnknownKID) = %v, want %v", err, !unknown, unknown)
			}
			if strings.Contains(err.Error(), tt.tok) && tt.tok != "" {
				t.Errorf("error %q carries the token", err)
			}
		})
	}
}

// nonCanonical changes the unused low bits of the last signature character,
// which a lax base64 decoder ignores.
func nonCanonical(tok string) string {
	last := tok[len(tok)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	return tok[:len(tok)-1] + string(alphabet[i^1])
}

func publicDER(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func publicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER(t, pub)})
}

func TestVerifyJWT_ClockSkew(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	tok := mustSign(t, s, claims())
	for _, d := range []time.Duration{-skew, -time.Second, 0, time.Hour - time.Second, time.Hour, time.Hour + skew - time.Second} {
		o := opts()
		o.Now = now.Add(d)
		if _, err := token.VerifyJWT(tok, s.KeySet(now), o); err != nil {
			t.Errorf("at now%+v: %v, want valid within the skew", d, err)
		}
	}
}

func TestVerifyJWT_Audience(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	tests := []struct {
		name     string
		bound    []string
		expected []string
		ok       bool
	}{
		{"unbound, no expectation", nil, nil, true},
		{"unbound, expectation", nil, []string{"api"}, true},
		{"bound, no expectation", []string{"api"}, nil, false},
		{"bound, match", []string{"api", "web"}, []string{"other", "web"}, true},
		{"bound, no match", []string{"api"}, []string{"API", "web"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := claims()
			c.Audiences = tt.bound
			o := opts()
			o.ExpectedAudiences = tt.expected
			got, err := token.VerifyJWT(mustSign(t, s, c), s.KeySet(now), o)
			if !tt.ok {
				wantErr(t, err, credential.ErrForbidden, "AUDIENCE_MISMATCH")
				return
			}
			if err != nil {
				t.Fatalf("VerifyJWT: %v", err)
			}
			if diff := cmp.Diff(tt.bound, got.Audiences); diff != "" {
				t.Errorf("audiences (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifyJWT_AudienceAsString(t *testing.T) {
	t.Parallel()
	k := signingKey(t, token.EdDSA)
	ks := mustSigner(t, []token.SigningKey{k}, "").KeySet(now)
	p := payload()
	p["aud"] = "api"
	tok := signRaw(t, jwt.SigningMethodEdDSA, edKey, map[string]any{"alg": "EdDSA", "kid": k.ID}, p)
	o := opts()
	o.ExpectedAudiences = []string{"api"}
	got, err := token.VerifyJWT(tok, ks, o)
	if err != nil {
		t.Fatalf("VerifyJWT: %v", err)
	}
	if diff := cmp.Diff([]string{"api"}, got.Audiences); diff != "" {
		t.Errorf("audiences (-want +got):\n%s", diff)
	}
}

func TestVerifyJWT_ClientIP(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.ES256)
	restricted := mustSign(t, s, claims())
	c := claims()
	c.AllowedCIDRs = nil
	open := mustSign(t, s, c)
	tests := []struct {
		name string
		tok  string
		ip   netip.Addr
		ok   bool
	}{
		{"inside IPv4", restricted, netip.MustParseAddr("10.255.0.1"), true},
		{"inside IPv6", restricted, netip.MustParseAddr("2001:db8::1"), true},
		{"IPv4-mapped IPv6", restricted, netip.MustParseAddr("::ffff:10.0.0.1"), true},
		{"outside", restricted, netip.MustParseAddr("11.0.0.1"), false},
		{"unknown", restricted, netip.Addr{}, false},
		{"unrestricted, unknown", open, netip.Addr{}, true},
		{"unrestricted, any", open, netip.MustParseAddr("203.0.113.9"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := opts()
			o.ClientIP = tt.ip
			_, err := token.VerifyJWT(tt.tok, s.KeySet(now), o)
			if tt.ok && err != nil {
				t.Fatalf("VerifyJWT: %v", err)
			}
			if !tt.ok {
				wantErr(t, err, credential.ErrForbidden, "IP_NOT_ALLOWED")
			}
		})
	}
}

func TestVerifyJWT_InvalidOptions(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	tok := mustSign(t, s, claims())
	tests := []struct {
		name string
		edit func(*token.VerifyOptions)
	}{
		{"no time", func(o *token.VerifyOptions) { o.Now = time.Time{} }},
		{"no tenant", func(o *token.VerifyOptions) { o.Tenant = "" }},
		{"negative skew", func(o *token.VerifyOptions) { o.ClockSkew = -time.Second }},
		{"no issuers", func(o *token.VerifyOptions) { o.Issuers = nil }},
		{"empty issuers", func(o *token.VerifyOptions) { o.Issuers = []string{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := opts()
			tt.edit(&o)
			_, err := token.VerifyJWT(tok, s.KeySet(now), o)
			wantErr(t, err, credential.ErrInvalidArgument, "")
		})
	}
}

func TestVerifyJWT_EmptyKeySet(t *testing.T) {
	t.Parallel()
	tok := mustSign(t, newTestSigner(t, token.EdDSA), claims())
	for name, ks := range map[string]*token.KeySet{"nil": nil, "zero": {}, "empty": mustKeySet(t, nil)} {
		t.Run(name, func(t *testing.T) {
			_, err := token.VerifyJWT(tok, ks, opts())
			wantErr(t, err, credential.ErrUnauthenticated, signatureInvalid)
		})
	}
}

func mustKeySet(t *testing.T, pub map[string]any) *token.KeySet {
	t.Helper()
	m := make(map[string]crypto.PublicKey, len(pub))
	for k, v := range pub {
		m[k] = v
	}
	ks, err := token.NewKeySet(m)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	return ks
}

func TestNewKeySet(t *testing.T) {
	t.Parallel()
	tok := mustSign(t, newTestSigner(t, token.RS256), claims())
	kid := signingKey(t, token.RS256).ID
	ks := mustKeySet(t, map[string]any{kid: rsaKey().Public(), "ed": edKey.Public(), "ec": ecKey.Public()})
	if ks.Len() != 3 {
		t.Errorf("Len = %d, want 3", ks.Len())
	}
	if _, err := token.VerifyJWT(tok, ks, opts()); err != nil {
		t.Fatalf("VerifyJWT: %v", err)
	}
	for name, pub := range map[string]crypto.PublicKey{
		"symmetric key":    []byte("secret"),
		"private key":      edKey,
		"1024-bit RSA key": mustRSA1024(t).Public(),
		"P-384 key":        mustP384(t).Public(),
		"nil ECDSA curve":  &ecdsa.PublicKey{},
	} {
		_, err := token.NewKeySet(map[string]crypto.PublicKey{"k": pub})
		if err == nil {
			t.Errorf("%s: NewKeySet accepted it", name)
			continue
		}
		wantErr(t, err, credential.ErrInvalidArgument, "")
	}
	if _, err := token.NewKeySet(map[string]crypto.PublicKey{"": edKey.Public()}); err == nil {
		t.Error("NewKeySet accepted an empty kid")
	}
}

func TestLooksJWT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		want bool
	}{
		{"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", true},
		{"eyJ.a.b", false},
		{"eyJa.b.c", true},
		{"eyJa.b.", false},
		{"eyJa..c", false},
		{"eyJa.b.c.d", false},
		{"eyJa.b", false},
		{"eyJa.b.c=", false},
		{"eyJa.b.c ", false},
		{"mc_v1_AgETaHR0cHM", false},
		{"", false},
		{"ey", false},
	}
	for _, tt := range tests {
		if got := token.LooksJWT(tt.s); got != tt.want {
			t.Errorf("LooksJWT(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func mustRSA1024(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustP384(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignJWT_FoldedReservedCustomClaimsStripped: encoding/json reads "Scp",
// "EXP" or "ſcope" (U+017F) into the scp, exp and scope fields, and the last
// duplicate wins, so such a custom claim, spliced after the reserved ones,
// replaced the token's scopes, expiry, CIDRs and tenant when it was read back
// (a derive request's custom_claims widened the token past its parent key).
func TestSignJWT_FoldedReservedCustomClaimsStripped(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	c := claims()
	c.Custom = map[string]any{
		"team": "platform", "Scp": []any{"admin"}, "EXP": float64(now.Add(1000 * time.Hour).Unix()),
		"ACL": []any{"0.0.0.0/0"}, "Nid": "other-tenant", "\u017fcp": []any{"admin"}, "AUD": []any{}, "Iss": "x",
	}
	for name := range c.Custom {
		if name != "team" && !token.ReservedClaim(name) {
			t.Errorf("ReservedClaim(%q) = false", name)
		}
	}
	got, err := token.VerifyJWT(mustSign(t, s, c), s.KeySet(now), opts())
	if err != nil {
		t.Fatalf("VerifyJWT: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"team": "platform"}, got.Custom); diff != "" {
		t.Errorf("custom (-want +got):\n%s", diff)
	}
	want := claims()
	if diff := cmp.Diff(want.Scopes, got.Scopes); diff != "" || !got.Expiry.Equal(want.Expiry) || got.Tenant != want.Tenant ||
		!cmp.Equal(want.AllowedCIDRs, got.AllowedCIDRs, cmpPrefixes) {
		t.Errorf("a custom claim overrode a reserved one: scopes %v, exp %v, tenant %v, acl %v", got.Scopes, got.Expiry, got.Tenant, got.AllowedCIDRs)
	}
}

// TestVerifyJWT_FoldedReservedClaimRejected: a payload naming a reserved
// claim in another letter case is never written by a Signer and is refused,
// whatever signed it (another implementation, an older release).
func TestVerifyJWT_FoldedReservedClaimRejected(t *testing.T) {
	t.Parallel()
	ed := signingKey(t, token.EdDSA)
	ks := mustSigner(t, []token.SigningKey{ed}, "").KeySet(now)
	for _, name := range []string{"Scp", "SCOPE", "Exp", "nId", "\u017fcp", "AKID", "ACL"} {
		p := payload()
		p[name] = []string{"admin"}
		tok := signRaw(t, jwt.SigningMethodEdDSA, edKey, map[string]any{"alg": "EdDSA", "kid": ed.ID, "typ": "JWT"}, p)
		if _, err := token.VerifyJWT(tok, ks, opts()); err == nil {
			t.Errorf("claim %q: VerifyJWT accepted it", name)
		} else {
			wantErr(t, err, credential.ErrMalformed, "")
		}
	}
}
