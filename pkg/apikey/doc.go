// Package apikey owns the issued-key formats of Talos (generate, parse,
// checksum), the HMAC SecretSet (current plus retired secrets, constant-time
// comparison), the imported-key IDs and the sidecar cache key. It imports only
// pkg/credential, the standard library, github.com/mr-tron/base58 and
// github.com/google/uuid; it never sees configuration, storage or transport.
//
// # v2 keys (the default)
//
//	{prefix}_v2_{body}
//
// prefix matches ^[a-zA-Z0-9_]{1,16}$ (see ValidPrefix). body is exactly 72
// characters of the Bitcoin base58 alphabet
// (123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz):
//
//	body     = payload || checksum
//	payload  = 6 chunks of 11 digits; chunk i is the big-endian uint64 of
//	           bytes 8i..8i+7 of (key ID (16 bytes) || secret (32 bytes)),
//	           most significant digit first, left-padded with '1'
//	checksum = 6 digits of CRC-32/IEEE (the zlib/PNG CRC) over the ASCII text
//	           "{prefix}_v2_{payload}", left-padded with '1'
//
// The key ID is a UUIDv4 (version and variant bits set) and is the key's public
// ID in canonical form; the secret is 256 random bits that Talos stores only as
// SecretSet.HashSecret. A chunk whose value does not fit its width (2^64, or
// 2^32 for the checksum) is invalid, so every key has exactly one spelling. A
// key is 77 to 92 characters; with prefix "talos", 81.
//
// Because the checksum covers the text and CRC-32 catches every burst of up to
// 32 bits, every single-character substitution anywhere in a key is detected,
// and so is every change confined to 4 consecutive characters of the prefix
// and payload (an adjacent transposition, say); other garbage passes with
// probability 2^-32. None of this needs the HMAC secret. Secret scanners can
// match
//
//	\b[a-zA-Z0-9_]{1,16}_v2_[1-9A-HJ-NP-Za-km-z]{72}\b
//
// and confirm a hit with the CRC. The body never contains '_', so a prefix
// may contain underscores: parsing splits at the last "_v2_".
//
// # v1 keys (Talos compatibility)
//
//	{prefix}_v1_{base58("<unix seconds>:<uuid>")}_{base58(HMAC-SHA256(current, "{prefix}_v1_{identifier}_"))}
//
// exactly as Ory Talos issues them (Bitcoin alphabet, full 32-byte HMAC). The
// UUID is the key ID. Nothing per key is stored: CheckV1 recomputes the HMAC
// under every active secret. They are always verified and issued only on
// request (NewV1).
//
// # Security notes
//
// Every comparison of secret-dependent bytes uses crypto/subtle, and MatchSecret
// and CheckV1 evaluate every active secret without an early exit, so timing
// tells at most how many secrets are active. No error carries any part of a
// credential or secret; Secret, SecretSet, Issued and Parsed redact themselves
// in fmt and slog output.
//
// # Concurrency
//
// All functions are safe for concurrent use. A SecretSet is immutable; it keeps
// a sync.Pool of keyed HMAC states per secret, so the verify path neither
// re-keys HMAC nor allocates.
//
// docs/credential-format.md documents the formats for operators, with test
// vectors.
package apikey
