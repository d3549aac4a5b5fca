package token_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

const (
	retiredIssuer = "https://old.talos.example.com"
	foreignIssuer = "https://evil.example.com"
)

func mustPolicy(t testing.TB, iss string, retired []token.RetiredIssuer, skew time.Duration) *token.Policy {
	t.Helper()
	p, err := token.NewPolicy(iss, retired, skew)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	return p
}

func TestNewPolicy_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		issuer  string
		retired []token.RetiredIssuer
		skew    time.Duration
	}{
		{"no issuer", "", nil, 0},
		{"control character", "https://a\n", nil, 0},
		{"negative skew", issuer, nil, -time.Second},
		{"skew over the bound", issuer, nil, token.MaxClockSkew + time.Second},
		{"empty retired issuer", issuer, []token.RetiredIssuer{{}}, 0},
		{"retired equals current", issuer, []token.RetiredIssuer{{Issuer: issuer}}, 0},
		{"retired twice", issuer, []token.RetiredIssuer{{Issuer: retiredIssuer}, {Issuer: retiredIssuer}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := token.NewPolicy(tt.issuer, tt.retired, tt.skew)
			wantErr(t, err, credential.ErrInvalidArgument, "")
		})
	}
	if _, err := token.NewPolicy(issuer, nil, token.MaxClockSkew); err != nil {
		t.Errorf("the maximum skew: %v", err)
	}
}

// TestPolicy_RetiredIssuerExpiresAtTheInstant evaluates one Policy at several
// instants: a retired issuer is accepted before its expiry and not from it on
// (exclusive boundary, like config's RetiredIssuer.Active), while an issuer
// retired without expiry stays accepted.
func TestPolicy_RetiredIssuerExpiresAtTheInstant(t *testing.T) {
	t.Parallel()
	expires := now.Add(time.Minute)
	p := mustPolicy(t, issuer, []token.RetiredIssuer{{Issuer: retiredIssuer, ExpiresAt: expires}, {Issuer: "https://forever.example"}}, skew)
	for _, tc := range []struct {
		at   time.Time
		want []string
	}{
		{now, []string{issuer, retiredIssuer, "https://forever.example"}},
		{expires.Add(-time.Nanosecond), []string{issuer, retiredIssuer, "https://forever.example"}},
		{expires, []string{issuer, "https://forever.example"}},
		{expires.Add(time.Hour), []string{issuer, "https://forever.example"}},
	} {
		if got := p.Issuers(tc.at); !slices.Equal(got, tc.want) {
			t.Errorf("Issuers(%v) = %v, want %v", tc.at, got, tc.want)
		}
		if got := p.Options(tc.at, credential.Presented{Tenant: tenant}).Issuers; !slices.Equal(got, tc.want) {
			t.Errorf("Options(%v).Issuers = %v, want %v", tc.at, got, tc.want)
		}
		if got, want := p.Accepts(retiredIssuer, tc.at), slices.Contains(tc.want, retiredIssuer); got != want {
			t.Errorf("Accepts(retired, %v) = %v, want %v", tc.at, got, want)
		}
	}
	if p.Accepts(foreignIssuer, now) || !p.Accepts(issuer, expires.Add(time.Hour)) {
		t.Error("Accepts: foreign accepted or current refused")
	}

	// The same through VerifyJWT and VerifyMacaroon.
	s := newTestSigner(t, token.EdDSA)
	c := claims()
	c.Issuer = retiredIssuer
	jwt, mc := mustSign(t, s, c), mustMint(t, c)
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{{now, true}, {expires.Add(-time.Second), true}, {expires, false}, {expires.Add(time.Second), false}} {
		o := p.Options(tc.at, credential.Presented{Tenant: tenant, ClientIP: netip.MustParseAddr("10.1.2.3")})
		_, jerr := token.VerifyJWT(jwt, s.KeySet(now), o)
		_, merr := verifyMC(mc, o)
		for name, err := range map[string]error{"jwt": jerr, "macaroon": merr} {
			if tc.ok && err != nil {
				t.Errorf("%s of the retired issuer at %v: %v, want accepted", name, tc.at, err)
			}
			if !tc.ok {
				if err == nil {
					t.Errorf("%s of the retired issuer at %v: accepted after its expiry", name, tc.at)
				} else {
					wantErr(t, err, credential.ErrUnauthenticated, signatureInvalid)
				}
			}
		}
	}
}

// TestPolicy_IssuersDoNotAllocate: until a retired issuer expires the
// accepted list is shared, so a hot verifier builds options for free.
func TestPolicy_IssuersDoNotAllocate(t *testing.T) {
	p := mustPolicy(t, issuer, []token.RetiredIssuer{{Issuer: retiredIssuer, ExpiresAt: now.Add(time.Hour)}}, skew)
	pr := credential.Presented{Tenant: tenant}
	if n := testing.AllocsPerRun(100, func() { _ = p.Options(now, pr) }); n != 0 {
		t.Errorf("Options allocates %v times before any expiry", n)
	}
}

// TestVerify_NoIssuersFailsClosed: options without issuers are refused, not
// read as "any issuer" (issue 11, finding 2: the sidecar built such options,
// so a JWT signed with a published key and naming any issuer was accepted).
func TestVerify_NoIssuersFailsClosed(t *testing.T) {
	t.Parallel()
	s := newTestSigner(t, token.EdDSA)
	c := claims()
	c.Issuer = foreignIssuer
	jwt, mc := mustSign(t, s, c), mustMint(t, c)
	o := opts()
	o.Issuers = nil
	if _, err := token.VerifyJWT(jwt, s.KeySet(now), o); err == nil {
		t.Error("VerifyJWT accepted a foreign issuer with no issuers configured")
	} else {
		wantErr(t, err, credential.ErrInvalidArgument, "")
	}
	if _, err := verifyMC(mc, o); err == nil {
		t.Error("VerifyMacaroon accepted a foreign issuer with no issuers configured")
	} else {
		wantErr(t, err, credential.ErrInvalidArgument, "")
	}
	// With a policy the foreign issuer is a signature-class rejection.
	o = mustPolicy(t, issuer, nil, skew).Options(now, credential.Presented{Tenant: tenant, ClientIP: netip.MustParseAddr("10.1.2.3")})
	_, err := token.VerifyJWT(jwt, s.KeySet(now), o)
	wantErr(t, err, credential.ErrUnauthenticated, signatureInvalid)
}

func TestPolicy_OptionsCarryTheRequest(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, issuer, nil, 90*time.Second)
	pr := credential.Presented{Tenant: tenant, ExpectedAudiences: []string{"api"}, ClientIP: netip.MustParseAddr("10.0.0.1"), DeferIPCheck: true}
	o := p.Options(now, pr)
	if !o.Now.Equal(now) || o.ClockSkew != 90*time.Second || o.Tenant != tenant || !slices.Equal(o.ExpectedAudiences, []string{"api"}) ||
		o.ClientIP != pr.ClientIP || !o.SkipIPCheck || !slices.Equal(o.Issuers, []string{issuer}) {
		t.Errorf("Options = %+v", o)
	}
	if p.Issuer() != issuer || p.ClockSkew() != 90*time.Second || len(p.Retired()) != 0 {
		t.Errorf("accessors: %q %v %v", p.Issuer(), p.ClockSkew(), p.Retired())
	}
}

// TestPolicy_UntilAndRecheck pin what a cache of verdicts must re-apply: the
// expiry plus the skew, and the retired issuer's own expiry.
func TestPolicy_UntilAndRecheck(t *testing.T) {
	t.Parallel()
	retires := now.Add(time.Minute)
	p := mustPolicy(t, issuer, []token.RetiredIssuer{{Issuer: retiredIssuer, ExpiresAt: retires}, {Issuer: "https://forever.example"}}, skew)
	exp := now.Add(time.Hour)
	for _, tc := range []struct {
		iss  string
		want time.Time
	}{
		{issuer, exp.Add(skew)},
		{retiredIssuer, retires},
		{"https://forever.example", exp.Add(skew)},
		{foreignIssuer, time.Time{}},
	} {
		if got := p.Until(tc.iss, exp); !got.Equal(tc.want) {
			t.Errorf("Until(%s) = %v, want %v", tc.iss, got, tc.want)
		}
	}
	if got := p.Until(retiredIssuer, now.Add(-skew)); !got.Equal(now) {
		t.Errorf("Until of a token expiring before its retired issuer = %v", got)
	}
	for _, tc := range []struct {
		name     string
		iss      string
		exp, at  time.Time
		sentinel error
	}{
		{"current, valid", issuer, exp, now, nil},
		{"current, within the skew", issuer, exp, exp.Add(skew - time.Second), nil},
		{"current, past the skew", issuer, exp, exp.Add(skew), credential.ErrExpired},
		{"retired, before its expiry", retiredIssuer, exp, retires.Add(-time.Second), nil},
		{"retired, at its expiry", retiredIssuer, exp, retires, credential.ErrUnauthenticated},
		{"foreign", foreignIssuer, exp, now, credential.ErrUnauthenticated},
		{"no expiry", issuer, time.Time{}, now, credential.ErrExpired},
	} {
		err := p.Recheck(tc.iss, tc.exp, tc.at)
		if tc.sentinel == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantErr(t, err, tc.sentinel, "")
		if strings.Contains(err.Error(), tc.iss) && tc.iss != "" {
			t.Errorf("%s: the error names the issuer: %v", tc.name, err)
		}
	}
}
