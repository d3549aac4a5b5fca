package tlsconf

import (
	"crypto/tls"
	"fmt"
)

// ClientAuth is how a server asks for client certificates.
type ClientAuth string

// The client authentication modes; "" means [ClientAuthNone].
const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = "none"
	// ClientAuthRequest asks for a client certificate and verifies one if
	// given ([tls.VerifyClientCertIfGiven]): a client without one still
	// connects (and may authenticate otherwise, with a bearer token).
	ClientAuthRequest ClientAuth = "request"
	// ClientAuthRequire fails the handshake of a client without a valid
	// certificate ([tls.RequireAndVerifyClientCert]); no HTTP status or
	// gRPC code can be sent.
	ClientAuthRequire ClientAuth = "require"
)

// tlsClientAuth maps a to crypto/tls's mode.
func (a ClientAuth) tlsClientAuth() (tls.ClientAuthType, error) {
	switch a {
	case "", ClientAuthNone:
		return tls.NoClientCert, nil
	case ClientAuthRequest:
		return tls.VerifyClientCertIfGiven, nil
	case ClientAuthRequire:
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("tlsconf: unknown client_auth %q (want none, request or require)", string(a))
}

// ParseMinVersion parses a configured minimum TLS version: "1.2" (also
// the default, for "") or "1.3".
func ParseMinVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlsconf: unknown min_version %q (want \"1.2\" or \"1.3\")", s)
}

// checkMinVersion returns v, or TLS 1.2 for 0; older versions are refused.
func checkMinVersion(v uint16) (uint16, error) {
	switch v {
	case 0:
		return tls.VersionTLS12, nil
	case tls.VersionTLS12, tls.VersionTLS13:
		return v, nil
	}
	return 0, fmt.Errorf("tlsconf: unsupported minimum TLS version %#04x (want TLS 1.2 or 1.3)", v)
}
