// Package token owns the derived tokens of Talos: short-lived credentials
// minted from an API key that verify without a database.
//
//   - JWTs (RFC 7519) signed with EdDSA (Ed25519, the default), RS256 or
//     ES256, with a kid header, plus the JWKS document (RFC 7517) that
//     publishes the public keys. Verification needs only the public keys
//     (a KeySet), so a sidecar can verify JWTs from the JWKS alone.
//   - Macaroons (gopkg.in/macaroon.v2, libmacaroons V2 binary format) with
//     typed first-party caveats and offline attenuation: anyone holding a
//     macaroon can narrow it (Attenuate) without the root key, and only the
//     holder of the root key can verify it. The root key is derived from the
//     HMAC secret, which sidecars never hold, so sidecars forward macaroons
//     to the control plane.
//
// docs/derived-tokens.md documents the claims, the JWT header, the JWKS
// endpoints and the macaroon caveat grammar for operators and client authors.
//
// # Errors
//
// Every error wraps one credential sentinel and never carries token material:
//
//   - credential.ErrMalformed: the token cannot be decoded, or is longer than
//     MaxTokenSize.
//   - credential.ErrUnauthenticated with reason SIGNATURE_INVALID: bad
//     signature, an algorithm other than the key's (alg "none", HS256 with a
//     public key), an unknown kid, an issuer that is not accepted, a token type
//     other than "derived", claims that do not make sense, an unknown or
//     misplaced macaroon caveat.
//   - credential.ErrExpired: expired or not yet valid, beyond the clock skew.
//   - credential.ErrNotFound with reason TOKEN_NOT_FOUND: another tenant's
//     token.
//   - credential.ErrForbidden with reason AUDIENCE_MISMATCH or IP_NOT_ALLOWED.
//   - credential.ErrInvalidArgument: bad input to a mint, key or option
//     function (including custom claims over 4 KiB and a token that would
//     exceed MaxTokenSize).
//
// The *credential.Error values returned are shared: callers must not modify
// them.
//
// # Imports
//
// pkg/credential, github.com/golang-jwt/jwt/v5, gopkg.in/macaroon.v2 and the
// standard library only: never configuration, storage or transport. Callers
// pass plain values (signing keys, root keys, prefixes, the time).
//
// # Concurrency
//
// Signer and KeySet are immutable after construction and safe for concurrent
// use; every function is safe for concurrent use. Nothing here reads the
// clock: the caller passes the time in VerifyOptions.Now and in the Claims it
// mints.
package token
