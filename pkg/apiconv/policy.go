package apiconv

import (
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// MaxRetiredIssuers bounds the retired issuers a sidecar reads from a token
// policy, so that a broken control plane cannot make it spend unbounded work.
const MaxRetiredIssuers = 1024

// TokenPolicy is the wire form of p (talos.sidecar.v1.TokenPolicy). Every
// retired issuer is sent, expired ones included: receivers evaluate expiry at
// each request.
func TokenPolicy(p *token.Policy) *sidecarpb.TokenPolicy {
	out := &sidecarpb.TokenPolicy{Issuer: p.Issuer(), ClockSkew: durationpb.New(p.ClockSkew())}
	for _, r := range p.Retired() {
		w := &sidecarpb.RetiredIssuer{Issuer: r.Issuer}
		if !r.ExpiresAt.IsZero() {
			w.ExpireTime = timestamppb.New(r.ExpiresAt)
		}
		out.RetiredIssuers = append(out.RetiredIssuers, w)
	}
	return out
}

// FromTokenPolicy reads a control plane's token policy. It is strict, since a
// sidecar verifies tokens under it: a missing issuer or clock skew, an
// invalid timestamp or duration, more than MaxRetiredIssuers retired issuers,
// and anything token.NewPolicy refuses (an empty or repeated issuer, a skew
// outside [0, token.MaxClockSkew]) are ErrInvalidArgument.
func FromTokenPolicy(w *sidecarpb.TokenPolicy) (*token.Policy, error) {
	if w.GetIssuer() == "" {
		return nil, credential.Invalid("token policy: issuer is required")
	}
	d := w.GetClockSkew()
	if d == nil {
		return nil, credential.Invalid("token policy: clock_skew is required")
	}
	if err := d.CheckValid(); err != nil {
		return nil, credential.Invalid("token policy: clock_skew is not a valid duration")
	}
	if n := len(w.GetRetiredIssuers()); n > MaxRetiredIssuers {
		return nil, credential.Invalid(fmt.Sprintf("token policy: more than %d retired issuers", MaxRetiredIssuers))
	}
	retired := make([]token.RetiredIssuer, len(w.GetRetiredIssuers()))
	for i, r := range w.GetRetiredIssuers() {
		retired[i].Issuer = r.GetIssuer()
		if ts := r.GetExpireTime(); ts != nil {
			if err := ts.CheckValid(); err != nil {
				return nil, credential.Invalid(fmt.Sprintf("token policy: retired issuer %d has an invalid expire_time", i))
			}
			retired[i].ExpiresAt = ts.AsTime()
			if retired[i].ExpiresAt.IsZero() {
				// The zero Time means "forever" in the domain; an explicit
				// year-1 expiry means "expired", and must not read as that.
				return nil, credential.Invalid(fmt.Sprintf("token policy: retired issuer %d has an invalid expire_time", i))
			}
		}
	}
	p, err := token.NewPolicy(w.GetIssuer(), retired, d.AsDuration())
	if err != nil {
		return nil, err
	}
	return p, nil
}
