package token

import (
	"net/netip"
	"slices"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// VerifyOptions are the facts of one verification.
type VerifyOptions struct {
	// Now is the time of the verification; required (the package never reads
	// the clock).
	Now time.Time
	// ClockSkew is the leeway on exp, nbf and iat (Talos: clock_skew,
	// default 5m); must not be negative.
	ClockSkew time.Duration
	// Issuers lists the accepted iss values (the current issuer and the
	// unexpired retired ones: Policy.Options fills them in); required. An
	// empty list is an invalid option, never "any issuer".
	Issuers []string
	// Tenant is the tenant of the request; required. A token of another
	// tenant is ErrNotFound (TOKEN_NOT_FOUND).
	Tenant credential.Tenant
	// ExpectedAudiences lists the audiences the caller accepts. A token
	// bound to audiences passes only when one of them is listed here; an
	// unbound token always passes.
	ExpectedAudiences []string
	// ClientIP is the address of the client; the zero Addr means unknown,
	// which passes only tokens without a CIDR restriction. IPv4-mapped IPv6
	// addresses are unmapped first.
	ClientIP netip.Addr
	// SkipIPCheck leaves the CIDR restriction to the caller, who checks
	// Claims.AllowedCIDRs (the intersection of every acl) itself.
	SkipIPCheck bool
}

func (o *VerifyOptions) check() error {
	switch {
	case o.Now.IsZero():
		return invalid("verify options: Now is required")
	case o.Tenant == "":
		return invalid("verify options: Tenant is required")
	case o.ClockSkew < 0:
		return invalid("verify options: ClockSkew must not be negative")
	case len(o.Issuers) == 0:
		// Fail closed: no accepted issuer is a configuration fault, not a
		// licence to accept whatever issuer a token names.
		return invalid("verify options: Issuers is required")
	}
	return nil
}

// checkTimes applies the clock skew to expiry, not-before and issue time.
// A zero nbf or iat is not checked; expiry is required by both formats.
func (o *VerifyOptions) checkTimes(iat, nbf, exp time.Time) error {
	if !o.Now.Before(exp.Add(o.ClockSkew)) {
		return errExpired
	}
	later := o.Now.Add(o.ClockSkew)
	if (!nbf.IsZero() && later.Before(nbf)) || (!iat.IsZero() && later.Before(iat)) {
		return errNotYetValid
	}
	return nil
}

// checkClaims applies the checks both formats share once the token is
// authentic and current: issuer, tenant, audience, client IP (in that order).
// acls are the CIDR sets the client IP must each satisfy.
func (o *VerifyOptions) checkClaims(c *Claims, acls [][]netip.Prefix) error {
	if !slices.Contains(o.Issuers, c.Issuer) {
		return errIssuer
	}
	if c.Tenant != o.Tenant {
		return errTenant
	}
	if !o.audienceOK(c.Audiences) {
		return errAudience
	}
	if o.SkipIPCheck {
		return nil
	}
	for _, acl := range acls {
		// An empty acl here is a restriction to nothing, not none.
		if len(acl) == 0 || !credential.IPAllowed(acl, o.ClientIP) {
			return errIPNotAllow
		}
	}
	return nil
}

// audienceOK implements the SDK's audience rule: a bound token needs an exact
// match in ExpectedAudiences; an unbound one always passes. bound is the
// effective audience set; a macaroon whose aud caveats do not intersect has
// bound = empty but non-nil, which no expectation matches.
func (o *VerifyOptions) audienceOK(bound []string) bool {
	if bound == nil {
		return true
	}
	for _, a := range bound {
		if slices.Contains(o.ExpectedAudiences, a) {
			return true
		}
	}
	return false
}
