package apiconv

import (
	"encoding/json"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// outcomes pairs each verdict sentinel with its sidecar outcome.
var outcomes = []struct {
	kind    error
	outcome sidecarpb.Outcome
}{
	{credential.ErrMalformed, sidecarpb.Outcome_OUTCOME_MALFORMED},
	{credential.ErrNotFound, sidecarpb.Outcome_OUTCOME_NOT_FOUND},
	{credential.ErrExpired, sidecarpb.Outcome_OUTCOME_EXPIRED},
	{credential.ErrRevoked, sidecarpb.Outcome_OUTCOME_REVOKED},
	{credential.ErrForbidden, sidecarpb.Outcome_OUTCOME_FORBIDDEN},
	{credential.ErrRateLimited, sidecarpb.Outcome_OUTCOME_RATE_LIMITED},
	{credential.ErrUnauthenticated, sidecarpb.Outcome_OUTCOME_UNAUTHENTICATED},
}

// SidecarResponse converts a verification outcome for the sidecar protocol.
// err must be nil or a verdict (see IsVerdict).
func SidecarResponse(res credential.Result, err error) *sidecarpb.VerifyResponse {
	out := &sidecarpb.VerifyResponse{Outcome: sidecarpb.Outcome_OUTCOME_VALID, Type: sidecarpb.CredentialType(res.Type)}
	if err != nil {
		out.Outcome = sidecarpb.Outcome_OUTCOME_UNSPECIFIED
		kind := credential.KindOf(err)
		for _, o := range outcomes {
			if o.kind == kind {
				out.Outcome = o.outcome
			}
		}
		d := errcode.Describe(err)
		out.Reason, out.Message = d.Reason, verifyMessage(err, d)
	}
	if res.KeyID == "" {
		return out
	}
	out.Tenant = string(res.Tenant)
	out.KeyId = string(res.KeyID)
	out.ActorId = res.ActorID
	out.Scopes = res.Scopes
	out.Metadata = res.Metadata
	out.State = sidecarpb.KeyState(res.Status)
	if !res.ExpireTime.IsZero() {
		out.ExpireTime = timestamppb.New(res.ExpireTime)
	}
	for _, p := range res.AllowedCIDRs {
		out.AllowedCidrs = append(out.AllowedCidrs, p.String())
	}
	out.Audiences = res.Audiences
	out.Issuer = res.Issuer
	out.Conditions = res.Conditions
	if rp := res.RatePolicy; rp != nil {
		out.RatePolicy = &sidecarpb.RatePolicy{Quota: rp.Quota, WindowMs: rp.Window.Milliseconds(), Unit: rp.Unit}
	}
	out.Visibility = int32(res.Visibility)
	return out
}

// FromSidecarResponse converts a sidecar verify response back to a result
// and verdict: nil for OUTCOME_VALID, else a *credential.Error wrapping the
// outcome's sentinel with the response's reason and message. An unknown
// outcome or an unparsable field fails closed as ErrUnavailable, since it can
// only come from a newer or broken control plane.
func FromSidecarResponse(r *sidecarpb.VerifyResponse) (credential.Result, error) {
	res := credential.Result{
		Type:       credentialType(r.GetType()),
		Tenant:     credential.Tenant(r.GetTenant()),
		KeyID:      credential.KeyID(r.GetKeyId()),
		ActorID:    r.GetActorId(),
		Scopes:     r.GetScopes(),
		Status:     credential.State(r.GetState()),
		Visibility: credential.Visibility(r.GetVisibility()),
		Audiences:  r.GetAudiences(),
		Issuer:     r.GetIssuer(),
		Conditions: r.GetConditions(),
	}
	if md := r.GetMetadata(); len(md) > 0 {
		if !json.Valid(md) {
			return credential.Result{}, errBadResponse()
		}
		res.Metadata = json.RawMessage(md)
	}
	if r.GetExpireTime() != nil {
		res.ExpireTime = r.GetExpireTime().AsTime()
	}
	for _, s := range r.GetAllowedCidrs() {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return credential.Result{}, errBadResponse()
		}
		res.AllowedCIDRs = append(res.AllowedCIDRs, p)
	}
	if rp := r.GetRatePolicy(); rp != nil {
		res.RatePolicy = &credential.RatePolicy{Quota: rp.GetQuota(), Window: time.Duration(rp.GetWindowMs()) * time.Millisecond, Unit: rp.GetUnit()}
	}
	if r.GetOutcome() == sidecarpb.Outcome_OUTCOME_VALID {
		// A valid verdict names its key and how it was presented.
		if res.KeyID == "" || res.Type == credential.TypeUnknown {
			return credential.Result{}, errBadResponse()
		}
		return res, nil
	}
	for _, o := range outcomes {
		if o.outcome == r.GetOutcome() {
			return res, &credential.Error{Kind: o.kind, Reason: r.GetReason(), Message: r.GetMessage()}
		}
	}
	return credential.Result{}, errBadResponse()
}

// credentialType converts a wire credential type; a value outside the enum
// is TypeUnknown, not a truncation to some other type.
func credentialType(t sidecarpb.CredentialType) credential.CredentialType {
	if t < sidecarpb.CredentialType_CREDENTIAL_TYPE_ISSUED || t > sidecarpb.CredentialType_CREDENTIAL_TYPE_MACAROON {
		return credential.TypeUnknown
	}
	return credential.CredentialType(t)
}

func errBadResponse() error {
	return &credential.Error{Kind: credential.ErrUnavailable, Reason: "BAD_UPSTREAM_RESPONSE", Message: "The control plane sent a response this sidecar cannot read."}
}
