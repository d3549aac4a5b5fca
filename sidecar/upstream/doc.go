// Package upstream is the sidecar's gRPC client to the control plane: it
// asks talos.sidecar.v1.Verifier for verdicts on cache misses and
// talos.v2alpha1.DerivedKeys for the JWKS that verifies derived tokens
// locally.
//
// Client implements credential.Verifier and credential.BatchVerifier. A
// verdict on the credential (valid, not found, revoked, …) always comes
// in-band in an OK response and is returned as the *credential.Error that
// pkg/apiconv decodes. A gRPC status is never a verdict: it is a failure of
// the call, mapped through pkg/errcode to ErrUnavailable,
// ErrDeadlineExceeded or ErrInvalidArgument, on which callers fail closed.
// UNAVAILABLE (and an attempt that hit its own Timeout) is retried with
// jittered exponential backoff, within the caller's deadline.
//
// The connection is TLS or mTLS when Options.TransportCredentials say so,
// plaintext otherwise. It is the sidecar's one connection to the control
// plane: the invalidation stream shares it (Client.Conn). A failed
// handshake (a wrong CA, say) is an outage like a refused connection:
// ErrUnavailable, never a verdict.
//
// The raw credential is sent to the control plane and nowhere else: it
// never appears in an error or a log line of this package.
//
// It imports pkg/api, pkg/apiconv, pkg/errcode and pkg/credential; never the
// control plane. A Client is safe for concurrent use.
package upstream
