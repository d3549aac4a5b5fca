// Package errcode is THE table that maps the credential sentinels to what each
// transport shows: HTTP status, gRPC code, AIP-193 reason, the status of an
// ext_authz deny, the verify-response error code, and whether to log at error
// level. Every adapter (httpapi, grpcapi, extauthz, the sidecar) calls it, so a
// sentinel means the same thing everywhere. It also holds the inverse, for
// clients turning a gRPC status back into a sentinel.
//
// It imports pkg/credential and grpc/codes only. The table is immutable and safe
// for concurrent use.
package errcode

import (
	"errors"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/pkg/credential"
)

// Domain is the AIP-193 ErrorInfo domain of every error Talos returns.
const Domain = "www.ory.com/talos"

// Row is how one sentinel shows on every transport.
type Row struct {
	Sentinel error
	HTTP     int
	GRPC     codes.Code
	// Reason is the default AIP-193 reason; a *credential.Error may override it.
	Reason string
	// Message is the default public message.
	Message string
	// DenyHTTP is the status of an ext_authz / forward-auth deny.
	DenyHTTP int
	// Verification is the VerificationErrorCode enum name of a verify response.
	Verification string
	// LogError says the error is an infrastructure failure worth an error log;
	// others are the caller's doing and log at debug.
	LogError bool
}

var table = []Row{
	{credential.ErrMalformed, http.StatusBadRequest, codes.InvalidArgument, "INVALID_API_KEY_FORMAT", "The credential is malformed.", http.StatusUnauthorized, "VERIFICATION_ERROR_INVALID_FORMAT", false},
	{credential.ErrNotFound, http.StatusNotFound, codes.NotFound, "NOT_FOUND", "The resource was not found.", http.StatusUnauthorized, "VERIFICATION_ERROR_NOT_FOUND", false},
	{credential.ErrExpired, http.StatusUnauthorized, codes.Unauthenticated, "API_KEY_EXPIRED", "The API key has expired.", http.StatusUnauthorized, "VERIFICATION_ERROR_EXPIRED", false},
	{credential.ErrRevoked, http.StatusUnauthorized, codes.Unauthenticated, "API_KEY_REVOKED", "The API key has been revoked.", http.StatusUnauthorized, "VERIFICATION_ERROR_REVOKED", false},
	{credential.ErrForbidden, http.StatusForbidden, codes.PermissionDenied, "FORBIDDEN", "The credential is not allowed here.", http.StatusForbidden, "VERIFICATION_ERROR_IP_NOT_ALLOWED", false},
	{credential.ErrRateLimited, http.StatusTooManyRequests, codes.ResourceExhausted, "TOO_MANY_REQUESTS", "The rate limit has been exceeded.", http.StatusTooManyRequests, "VERIFICATION_ERROR_RATE_LIMITED", false},
	{credential.ErrInvalidArgument, http.StatusBadRequest, codes.InvalidArgument, "BAD_REQUEST", "The request is invalid.", http.StatusBadRequest, "VERIFICATION_ERROR_INVALID_FORMAT", false},
	{credential.ErrConflict, http.StatusConflict, codes.AlreadyExists, "CONFLICT", "The resource already exists.", http.StatusConflict, "VERIFICATION_ERROR_INTERNAL", false},
	{credential.ErrFailedPrecondition, http.StatusConflict, codes.FailedPrecondition, "FAILED_PRECONDITION", "The resource is not in a state that allows this operation.", http.StatusForbidden, "VERIFICATION_ERROR_INTERNAL", false},
	{credential.ErrUnauthenticated, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHORIZED", "Authentication is required.", http.StatusUnauthorized, "VERIFICATION_ERROR_SIGNATURE_INVALID", false},
	{credential.ErrPermissionDenied, http.StatusForbidden, codes.PermissionDenied, "FORBIDDEN", "Permission denied.", http.StatusForbidden, "VERIFICATION_ERROR_INTERNAL", false},
	{credential.ErrUnavailable, http.StatusServiceUnavailable, codes.Unavailable, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable.", http.StatusServiceUnavailable, "VERIFICATION_ERROR_INTERNAL", true},
	{credential.ErrDeadlineExceeded, http.StatusGatewayTimeout, codes.DeadlineExceeded, "GATEWAY_TIMEOUT", "The operation timed out.", http.StatusServiceUnavailable, "VERIFICATION_ERROR_INTERNAL", true},
	// Talos answers methods a mode does not serve with Unimplemented, which
	// its gateway shows as 404.
	{credential.ErrUnimplemented, http.StatusNotFound, codes.Unimplemented, "NOT_FOUND", "Not found.", http.StatusNotFound, "VERIFICATION_ERROR_INTERNAL", false},
}

// Internal is the row of an error that wraps no sentinel: 500, INTERNAL, a
// generic message; its cause is logged, never shown.
var Internal = Row{nil, http.StatusInternalServerError, codes.Internal, "INTERNAL_SERVER_ERROR", "An internal error occurred.", http.StatusServiceUnavailable, "VERIFICATION_ERROR_INTERNAL", true}

// Rows returns a copy of the table, for tests and docs.
func Rows() []Row { return append([]Row(nil), table...) }

// Lookup returns the row of the sentinel err wraps, or Internal.
func Lookup(err error) Row {
	for i := range table {
		if errors.Is(err, table[i].Sentinel) {
			return table[i]
		}
	}
	return Internal
}

// Public is what may be shown of an error outside the process.
type Public struct {
	Row
	Reason   string
	Message  string
	Metadata map[string]string
}

// Describe returns the row of err plus its public reason, message and
// metadata: those of a *credential.Error when err carries one, else the row's
// defaults. Messages of other errors are never used, since they may carry
// internal detail.
func Describe(err error) Public {
	row := Lookup(err)
	p := Public{Row: row, Reason: row.Reason, Message: row.Message}
	var ce *credential.Error
	if errors.As(err, &ce) && row.Sentinel != nil {
		if ce.Reason != "" {
			p.Reason = ce.Reason
		}
		if ce.Message != "" {
			p.Message = ce.Message
		}
		p.Metadata = ce.Metadata
	}
	return p
}

// HTTPFromGRPC maps a gRPC code to the HTTP status Talos uses for it.
func HTTPFromGRPC(c codes.Code) int {
	if c == codes.OK {
		return http.StatusOK
	}
	if c == codes.Canceled {
		return 499
	}
	for i := range table {
		if table[i].GRPC == c {
			return table[i].HTTP
		}
	}
	return http.StatusInternalServerError
}

// FromGRPC maps a gRPC code back to a sentinel (nil for OK). Codes without a
// row become ErrUnavailable so that clients fail closed.
func FromGRPC(c codes.Code) error {
	switch c {
	case codes.OK:
		return nil
	case codes.Unauthenticated:
		return credential.ErrUnauthenticated
	case codes.PermissionDenied:
		return credential.ErrPermissionDenied
	case codes.InvalidArgument:
		return credential.ErrInvalidArgument
	}
	for i := range table {
		if table[i].GRPC == c {
			return table[i].Sentinel
		}
	}
	return credential.ErrUnavailable
}

// HTTPReason is the default reason of a gRPC code: the reason of its first row,
// or INTERNAL_SERVER_ERROR.
func HTTPReason(c codes.Code) string {
	for i := range table {
		if table[i].GRPC == c {
			return table[i].Reason
		}
	}
	return Internal.Reason
}

// StatusName is the google.rpc.Code name of c ("NOT_FOUND", "CANCELLED"), as
// AIP-193 error bodies show it on every surface; unknown codes are INTERNAL.
func StatusName(c codes.Code) string {
	if n, ok := code.Code_name[int32(c)]; ok {
		return n
	}
	return code.Code_INTERNAL.String()
}
