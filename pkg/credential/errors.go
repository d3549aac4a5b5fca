package credential

import (
	"errors"
	"time"
)

// The closed set of sentinel errors. Every layer translates its own failures to
// one of these exactly once (stores by driver code, clients by status code), and
// pkg/errcode maps each to an HTTP status, a gRPC code and an AIP-193 reason.
//
// Returning a bare sentinel allocates nothing, which matters on the verify path.
var (
	// ErrMalformed: the credential or request could not be parsed at all.
	ErrMalformed = errors.New("malformed")
	// ErrNotFound: no such key, and every pre-lookup failure of a credential
	// (bad checksum, unknown prefix, another tenant's key), so that nobody can
	// tell "wrong secret" from "no such key".
	ErrNotFound = errors.New("not found")
	// ErrExpired: the key exists but its expiry has passed.
	ErrExpired = errors.New("expired")
	// ErrRevoked: the key exists but has been revoked.
	ErrRevoked = errors.New("revoked")
	// ErrForbidden: the credential is valid but not allowed here (client IP,
	// scope, tenant).
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited: the key's rate-limit policy denies the request.
	ErrRateLimited = errors.New("rate limited")
	// ErrInvalidArgument: a request field is missing, malformed or out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrConflict: the resource already exists or is already in the requested state.
	ErrConflict = errors.New("conflict")
	// ErrFailedPrecondition: the resource is not in a state that allows the operation.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnauthenticated: an admin caller did not authenticate.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: an admin caller is not allowed to do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable: a dependency (database, cache, upstream) cannot be reached.
	ErrUnavailable = errors.New("unavailable")
	// ErrDeadlineExceeded: a dependency did not answer in time.
	ErrDeadlineExceeded = errors.New("deadline exceeded")
	// ErrUnimplemented: the operation is not served by this process.
	ErrUnimplemented = errors.New("unimplemented")
)

// Sentinels lists every sentinel, for table tests that must cover them all.
// The returned slice is a fresh copy owned by the caller.
func Sentinels() []error {
	return []error{
		ErrMalformed, ErrNotFound, ErrExpired, ErrRevoked, ErrForbidden,
		ErrRateLimited, ErrInvalidArgument, ErrConflict, ErrFailedPrecondition,
		ErrUnauthenticated, ErrPermissionDenied, ErrUnavailable,
		ErrDeadlineExceeded, ErrUnimplemented,
	}
}

// Error carries a sentinel plus details that are safe to show the public: a
// machine-readable Reason (an AIP-193 reason such as "API_KEY_NOT_FOUND"), a
// human Message, optional ErrorInfo metadata and a retry hint. It never carries
// secret material. errors.Is(e, e.Kind) holds.
type Error struct {
	Kind       error
	Reason     string
	Message    string
	Metadata   map[string]string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Kind.Error()
}

func (e *Error) Unwrap() error { return e.Kind }

// Errorf returns an *Error of the given kind with a public message and reason.
func Errorf(kind error, reason, message string) *Error {
	return &Error{Kind: kind, Reason: reason, Message: message}
}

// Invalid is shorthand for an ErrInvalidArgument with reason BAD_REQUEST.
func Invalid(message string) *Error {
	return &Error{Kind: ErrInvalidArgument, Reason: "BAD_REQUEST", Message: message}
}

// KindOf returns the sentinel err wraps, or nil when it wraps none.
func KindOf(err error) error {
	for _, s := range Sentinels() {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}
