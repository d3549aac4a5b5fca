package token

import (
	"fmt"
	"slices"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// MaxClockSkew bounds a Policy's clock skew (config: credentials.clock_skew,
// whose validation uses the same bound).
const MaxClockSkew = 10 * time.Minute

// RetiredIssuer is a former issuer that is still accepted in derived tokens
// until ExpiresAt (exclusive); a zero ExpiresAt accepts it forever.
type RetiredIssuer struct {
	Issuer    string
	ExpiresAt time.Time
}

// Policy is what a deployment accepts in a derived token beyond its
// signature: the issuers (the current one and the retired ones, each until
// its expiry) and the clock skew. It is the one home of that rule: the
// control plane builds it from configuration, sends it to sidecars, and both
// turn it into VerifyOptions at the instant of each request (Options), so a
// retired issuer stops being accepted the moment it expires in every running
// process. It is immutable and safe for concurrent use; build it with
// NewPolicy.
type Policy struct {
	issuer  string
	retired []RetiredIssuer
	skew    time.Duration
	// all is every issuer, current first; firstExpiry is the earliest
	// non-zero ExpiresAt of the retired ones (zero: none expires). Until
	// firstExpiry, Issuers returns all without allocating.
	all         []string
	firstExpiry time.Time
}

// NewPolicy returns the policy accepting issuer and, each until its expiry,
// the retired issuers, with skew of leeway on exp, nbf and iat. An empty or
// unprintable issuer (current or retired), a retired issuer equal to the
// current one or listed twice, and a skew outside [0, MaxClockSkew] are
// ErrInvalidArgument. retired is copied.
func NewPolicy(issuer string, retired []RetiredIssuer, skew time.Duration) (*Policy, error) {
	if issuer == "" || !text(issuer) {
		return nil, invalid("policy: the issuer must be a non-empty printable string")
	}
	if skew < 0 || skew > MaxClockSkew {
		return nil, invalid(fmt.Sprintf("policy: the clock skew must be between 0s and %s", MaxClockSkew))
	}
	p := &Policy{issuer: issuer, skew: skew, all: make([]string, 1, 1+len(retired))}
	p.all[0] = issuer
	for i, r := range retired {
		switch {
		case r.Issuer == "" || !text(r.Issuer):
			return nil, invalid(fmt.Sprintf("policy: retired issuer %d must be a non-empty printable string", i))
		case slices.Contains(p.all, r.Issuer):
			return nil, invalid(fmt.Sprintf("policy: retired issuer %d is listed twice or is the current issuer", i))
		}
		p.all = append(p.all, r.Issuer)
		if e := r.ExpiresAt; !e.IsZero() && (p.firstExpiry.IsZero() || e.Before(p.firstExpiry)) {
			p.firstExpiry = e
		}
	}
	p.retired = slices.Clone(retired)
	return p, nil
}

// Issuer returns the current issuer, the iss of newly minted tokens.
func (p *Policy) Issuer() string { return p.issuer }

// Retired returns the retired issuers as given, expired ones included. The
// slice is the caller's.
func (p *Policy) Retired() []RetiredIssuer { return slices.Clone(p.retired) }

// ClockSkew returns the leeway on exp, nbf and iat.
func (p *Policy) ClockSkew() time.Duration { return p.skew }

// Issuers returns the issuers accepted at now: the current one and every
// retired one whose expiry is after now. The slice may be shared: callers
// must not modify it.
func (p *Policy) Issuers(now time.Time) []string {
	if p.firstExpiry.IsZero() || now.Before(p.firstExpiry) {
		return p.all
	}
	out := make([]string, 1, len(p.all))
	out[0] = p.issuer
	for _, r := range p.retired {
		if r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt) {
			out = append(out, r.Issuer)
		}
	}
	return out
}

// Accepts reports whether iss is accepted at now.
func (p *Policy) Accepts(iss string, now time.Time) bool {
	if iss == p.issuer {
		return true
	}
	for _, r := range p.retired {
		if r.Issuer == iss {
			return r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt)
		}
	}
	return false
}

// Options returns the options of verifying a token presented in pr at now:
// the issuers accepted at now, the skew, and pr's tenant, expected audiences
// and client IP (the CIDR check is left to the caller when pr.DeferIPCheck).
func (p *Policy) Options(now time.Time, pr credential.Presented) VerifyOptions {
	return VerifyOptions{
		Now: now, ClockSkew: p.skew, Issuers: p.Issuers(now),
		Tenant: pr.Tenant, ExpectedAudiences: pr.ExpectedAudiences, ClientIP: pr.ClientIP,
		SkipIPCheck: pr.DeferIPCheck,
	}
}

// Until returns the instant from which a token of issuer iss expiring at exp,
// verified earlier under p, is no longer accepted: exp plus the skew, or the
// issuer's expiry when that comes first (the zero Time when iss is not
// accepted at all). A cache must not serve the verdict from then on.
func (p *Policy) Until(iss string, exp time.Time) time.Time {
	until := exp.Add(p.skew)
	if iss == p.issuer {
		return until
	}
	for _, r := range p.retired {
		if r.Issuer == iss {
			if !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(until) {
				return r.ExpiresAt
			}
			return until
		}
	}
	return time.Time{}
}

// Recheck re-applies, at now, the checks of a verification that may change
// with time to a derived token that verified earlier (a cached verdict): its
// issuer (iss) must still be accepted and now must be before its expiry (exp)
// plus the skew. It returns nil or the error the verifier would return now.
// Not-before and issue time only become more valid with time and are not
// rechecked.
func (p *Policy) Recheck(iss string, exp, now time.Time) error {
	if !p.Accepts(iss, now) {
		return errIssuer
	}
	if !now.Before(exp.Add(p.skew)) {
		return errExpired
	}
	return nil
}
