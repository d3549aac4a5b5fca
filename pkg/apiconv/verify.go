package apiconv

import (
	"errors"
	"time"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// reasonCodes refine the verification code of an error by its reason where
// one sentinel covers several codes.
var reasonCodes = map[string]pb.VerificationErrorCode{
	"AUDIENCE_MISMATCH": pb.VerificationErrorCode_VERIFICATION_ERROR_AUDIENCE_MISMATCH,
	"SIGNATURE_INVALID": pb.VerificationErrorCode_VERIFICATION_ERROR_SIGNATURE_INVALID,
	"IP_NOT_ALLOWED":    pb.VerificationErrorCode_VERIFICATION_ERROR_IP_NOT_ALLOWED,
	"TOKEN_NOT_FOUND":   pb.VerificationErrorCode_VERIFICATION_ERROR_NOT_FOUND,
}

// VerifyResponse converts a verification outcome. err must be nil or a
// verdict (see IsVerdict); other errors become VERIFICATION_ERROR_INTERNAL.
func VerifyResponse(res credential.Result, err error) *pb.VerifyApiKeyResponse {
	valid := err == nil
	out := &pb.VerifyApiKeyResponse{IsValid: &valid}
	if err != nil {
		d := errcode.Describe(err)
		out.ErrorCode = pb.VerificationErrorCode(pb.VerificationErrorCode_value[d.Verification])
		if code, ok := reasonCodes[d.Reason]; ok {
			out.ErrorCode = code
		}
		out.ErrorMessage = verifyMessage(err, d)
	}
	if res.KeyID == "" {
		return out
	}
	out.KeyId = string(res.KeyID)
	out.ActorId = res.ActorID
	out.Scopes = res.Scopes
	out.Metadata = MetadataToPB(res.Metadata)
	out.Status = stateToPB(res.Status)
	out.Visibility = VisibilityToPB(res.Visibility)
	out.ExpireTime = ts(res.ExpireTime)
	out.Issuer = res.Issuer
	out.RateLimitPolicy = RatePolicyToPB(res.RatePolicy)
	out.Audiences = res.Audiences
	out.Conditions = res.Conditions
	return out
}

// SetRateLimit fills the rate-limit state of a verification the limiter
// decided on: the units left (0 once limited) and when the budget is full
// again. A verification the limiter did not decide on (enforcement off, no
// policy, a limiter failing open) leaves both fields out.
func SetRateLimit(out *pb.VerifyApiKeyResponse, remaining int64, reset time.Time) {
	out.RateLimitRemaining = &remaining
	out.RateLimitResetTime = ts(reset)
}

func verifyMessage(err error, d errcode.Public) string {
	var ce *credential.Error
	if errors.As(err, &ce) && ce.Message != "" {
		return ce.Message
	}
	switch d.Sentinel {
	case credential.ErrNotFound:
		return "The API key was not found."
	case credential.ErrMalformed:
		return "The API key format is invalid."
	}
	return d.Message
}
