package token

import "github.com/talos-project/talos/pkg/credential"

// The verification errors. They are preallocated so that rejecting a token
// allocates nothing for the error, and their messages are fixed, so no part of
// a token (not even an attacker-chosen kid) can reach a log or a response.
var (
	errMalformed = &credential.Error{Kind: credential.ErrMalformed, Message: "derived token is malformed"}
	errTooLarge  = &credential.Error{Kind: credential.ErrMalformed, Message: "derived token is longer than 8192 bytes"}

	errSignature  = signatureError("derived token signature is invalid")
	errUnknownKey = ErrUnknownKID
	errAlgorithm  = signatureError("derived token algorithm is not allowed for its signing key")
	errHeader     = signatureError("derived token header is not supported")
	errIssuer     = signatureError("derived token issuer is not accepted")
	errType       = signatureError("token is not a derived token")
	errClaims     = signatureError("derived token claims are invalid")
	errCaveat     = signatureError("macaroon caveat is not understood")

	errExpired     = &credential.Error{Kind: credential.ErrExpired, Message: "derived token has expired"}
	errNotYetValid = &credential.Error{Kind: credential.ErrExpired, Message: "derived token is not valid yet"}

	errTenant     = &credential.Error{Kind: credential.ErrNotFound, Reason: "TOKEN_NOT_FOUND", Message: "token not valid for this network"}
	errAudience   = &credential.Error{Kind: credential.ErrForbidden, Reason: "AUDIENCE_MISMATCH", Message: "derived token is not valid for this audience"}
	errIPNotAllow = &credential.Error{Kind: credential.ErrForbidden, Reason: "IP_NOT_ALLOWED", Message: "client IP address is not allowed to use this token"}
)

// ErrUnknownKID is the SIGNATURE_INVALID error VerifyJWT returns for a kid
// that is not in the key set (or no kid). A verifier whose keys may have been
// rotated elsewhere can refresh its key set once on errors.Is(err,
// ErrUnknownKID), rather than on every invalid signature. Do not modify it.
var ErrUnknownKID = signatureError("derived token signing key is unknown")

func signatureError(msg string) *credential.Error {
	return &credential.Error{Kind: credential.ErrUnauthenticated, Reason: "SIGNATURE_INVALID", Message: msg}
}

// invalid is an ErrInvalidArgument for bad input to a mint, key or option
// function. Callers never pass token material to it.
func invalid(msg string) error { return credential.Invalid("token: " + msg) }
