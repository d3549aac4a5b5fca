package credential

import (
	"net/netip"
	"strings"
)

// The rules below are the ones both processes apply: the control plane when
// it verifies, the sidecar when it decides from a cached or local verdict.
// They live here, once, so the two can never disagree about who may pass.

// MaxCredentialBytes is the longest credential any surface accepts (the
// limit of the Ory SDK): the admin and self-service APIs, the sidecar
// protocol, ext_authz and the CLI. Longer input is refused before any lookup.
const MaxCredentialBytes = 8192

// IPAllowed reports whether addr may present a credential restricted to
// cidrs. No restriction allows everyone. An IPv4 address and its IPv4-mapped
// IPv6 form (::ffff:10.0.0.1) are one address, whichever way a listener or
// proxy wrote it and whichever way the prefix was written (10.0.0.0/8 or
// ::ffff:10.0.0.0/104). An invalid addr (the client address could not be
// determined) passes no restriction: restrictions fail closed.
func IPAllowed(cidrs []netip.Prefix, addr netip.Addr) bool {
	if len(cidrs) == 0 {
		return true
	}
	addr = addr.WithZone("").Unmap()
	if !addr.IsValid() {
		return false
	}
	var mapped netip.Addr
	if addr.Is4() {
		mapped = netip.AddrFrom16(addr.As16())
	}
	for _, p := range cidrs {
		if p.Contains(addr) || (mapped.IsValid() && p.Contains(mapped)) {
			return true
		}
	}
	return false
}

// IsVerdict reports whether err is a decision about the credential (it is not
// valid, not here, not now), as opposed to a failure to decide. Verdicts are
// answers: the sidecar protocol carries them as outcomes and caches may keep
// them. Everything else (unavailable, timed out, an error wrapping no
// sentinel) means nobody could decide.
func IsVerdict(err error) bool {
	switch KindOf(err) {
	case ErrNotFound, ErrExpired, ErrRevoked, ErrForbidden, ErrRateLimited, ErrMalformed, ErrUnauthenticated:
		return true
	}
	return false
}

// IsOutage reports whether err means a dependency could not answer: the
// errors for which a cached allow may be served stale (stale-if-error). An
// error that wraps no sentinel counts, since it can only be a failure.
func IsOutage(err error) bool {
	k := KindOf(err)
	return k == ErrUnavailable || k == ErrDeadlineExceeded || k == nil
}

// The public verdicts both processes return for the same finding, with the
// same reason and message wherever it is decided.
var (
	// ErrIPNotAllowed: the client address fails the credential's CIDRs.
	ErrIPNotAllowed = &Error{Kind: ErrForbidden, Reason: "IP_NOT_ALLOWED", Message: "The client IP address is not allowed to use this key."}
	// ErrKeyExpired: the key's expiry has passed.
	ErrKeyExpired = &Error{Kind: ErrExpired, Reason: "API_KEY_EXPIRED", Message: "The API key has expired."}
	// ErrKeyFormat: the credential cannot be a key at all (empty, oversized,
	// not printable ASCII).
	ErrKeyFormat = &Error{Kind: ErrMalformed, Reason: "INVALID_API_KEY_FORMAT", Message: "The API key format is invalid."}
)

// ForwardedAddr is the client address that the nearest proxy wrote into a
// forwarding header (X-Forwarded-For, X-Real-IP, CF-Connecting-IP,
// True-Client-IP), given the header's values in order: the last entry of the
// last value. Proxies append, so every entry to its left, and every earlier
// header line, is whatever the client chose to send; trusting any of them
// would let a client pick its address, pass a CIDR restriction or dodge a
// per-address throttle. The zero Addr when that entry is not an address.
func ForwardedAddr(values []string) netip.Addr {
	if len(values) == 0 {
		return netip.Addr{}
	}
	v := values[len(values)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return ParseAddr(strings.Trim(v, " \t"))
}

// ParseAddr parses an IP address with or without a port ("10.0.0.1",
// "[::1]:80"), unmapping IPv4-mapped IPv6; the zero Addr when s is neither.
func ParseAddr(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
