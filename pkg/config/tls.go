package config

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/talos-project/talos/pkg/credential"
)

// TLS is the tls block of a listener (serve.http.tls, serve.grpc.tls,
// serve.metrics.tls, proxy.extauthz.tls, proxy.http.tls, proxy.metrics.tls):
// the listener serves TLS from PEM files that are re-read when they change
// (cert-manager rotates them in place). Talos addition.
type TLS struct {
	Enabled bool `koanf:"enabled"`
	// CertFile (the chain, leaf first) and KeyFile are required when
	// Enabled.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ClientCAFile verifies client certificates; required when ClientAuth
	// is request or require.
	ClientCAFile string     `koanf:"client_ca_file"`
	ClientAuth   ClientAuth `koanf:"client_auth"`
	MinVersion   TLSVersion `koanf:"min_version"`
}

// ClientTLS is the TLS of an outgoing link (proxy.upstream_tls,
// cache.redis.tls, proxy.cache.redis.tls). Talos addition, except enabled.
type ClientTLS struct {
	Enabled bool `koanf:"enabled"`
	// CAFile verifies the server; "" is the system roots.
	CAFile string `koanf:"ca_file"`
	// CertFile and KeyFile are a client certificate: both or neither.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ServerName is the name the server's certificate must carry; "" is the
	// host dialled.
	ServerName string     `koanf:"server_name"`
	MinVersion TLSVersion `koanf:"min_version"`
}

// RedisTLS is cache.redis.tls.
type RedisTLS = ClientTLS

// ClientAuth is the client_auth of a listener's TLS block.
type ClientAuth string

// Client certificate policies. The zero value is none.
const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = "none"
	// ClientAuthRequest verifies a client certificate when one is sent: a
	// caller without one still connects (and may use a bearer token).
	ClientAuthRequest ClientAuth = "request"
	// ClientAuthRequire fails the handshake of a caller without a valid
	// client certificate.
	ClientAuthRequire ClientAuth = "require"
)

// VerifiesClients reports whether the listener verifies client
// certificates, so that certificate identities can match.
func (a ClientAuth) VerifiesClients() bool { return a == ClientAuthRequest || a == ClientAuthRequire }

// TLSVersion is a min_version: "1.2" (the default) or "1.3".
type TLSVersion string

// TLS versions.
const (
	TLSVersion12 TLSVersion = "1.2"
	TLSVersion13 TLSVersion = "1.3"
)

// BearerToken is one item of serve.admin.auth.bearer_tokens: a bare token
// string (role admin, as before roles existed) or {token, role}.
type BearerToken struct {
	Token Secret `koanf:"token"`
	// Role is a credential.Role name; "" is admin.
	Role string `koanf:"role"`
}

// Identity is one item of serve.admin.auth.identities: a pattern for a
// verified client certificate's URI SAN (a SPIFFE ID, say), DNS SAN or
// subject (exactly one of them), with path.Match globs, and the role it
// grants.
type Identity struct {
	URISAN  string `koanf:"uri_san"`
	DNSSAN  string `koanf:"dns_san"`
	Subject string `koanf:"subject"`
	Role    string `koanf:"role"`
}

// RoleToken is a bearer token with its parsed role.
type RoleToken struct {
	Token string
	Role  credential.Role
}

// RoleTokens returns every configured token with its role: the bearer tokens
// (admin unless they say otherwise), then the sidecar tokens. It relies on
// Validate having checked the roles; an invalid role comes back as
// credential.RoleNone, which reaches nothing.
func (a AdminAuth) RoleTokens() []RoleToken {
	out := make([]RoleToken, 0, len(a.BearerTokens)+len(a.SidecarTokens))
	for _, t := range a.BearerTokens {
		r, _ := credential.ParseRole(t.Role)
		out = append(out, RoleToken{Token: t.Token.Value(), Role: r})
	}
	for _, t := range a.SidecarTokens {
		out = append(out, RoleToken{Token: t.Value(), Role: credential.RoleSidecar})
	}
	return out
}

// IdentityRole returns the parsed role of an identity (credential.RoleNone
// when invalid; Validate rejects that).
func (i Identity) IdentityRole() credential.Role {
	if i.Role == "" {
		return credential.RoleNone // an identity must name its role
	}
	r, err := credential.ParseRole(i.Role)
	if err != nil {
		return credential.RoleNone
	}
	return r
}

// checkTLS checks a listener's TLS block.
func checkTLS(path string, t TLS, fail func(path, format string, args ...any)) {
	if !t.Enabled {
		// Files without enabled would leave the listener in plaintext while
		// its operator believes it is encrypted.
		if t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" || t.ClientAuth.VerifiesClients() {
			fail(path+".enabled", "must be true when %s sets files or client_auth (the listener would serve plaintext)", path)
		}
		return
	}
	if t.CertFile == "" {
		fail(path+".cert_file", "must be set when %s.enabled is true", path)
	}
	if t.KeyFile == "" {
		fail(path+".key_file", "must be set when %s.enabled is true", path)
	}
	switch t.ClientAuth {
	case "", ClientAuthNone:
		if t.ClientCAFile != "" {
			fail(path+".client_auth", "must be request or require when %s.client_ca_file is set (no client certificate would be asked for)", path)
		}
	case ClientAuthRequest, ClientAuthRequire:
		if t.ClientCAFile == "" {
			fail(path+".client_ca_file", "must be set when %s.client_auth is %s", path, t.ClientAuth)
		}
	default:
		fail(path+".client_auth", "must be none, request or require (got %q)", t.ClientAuth)
	}
	checkTLSVersion(path+".min_version", t.MinVersion, fail)
}

// checkClientTLS checks an outgoing link's TLS block.
func checkClientTLS(path string, t ClientTLS, fail func(path, format string, args ...any)) {
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" {
			fail(path+".enabled", "must be true when %s sets files or server_name (the link would be plaintext)", path)
		}
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		fail(path, "cert_file and key_file must be set together")
	}
	checkTLSVersion(path+".min_version", t.MinVersion, fail)
}

func checkTLSVersion(path string, v TLSVersion, fail func(path, format string, args ...any)) {
	if v != "" && v != TLSVersion12 && v != TLSVersion13 {
		fail(path, "must be 1.2 or 1.3 (got %q)", v)
	}
}

// checkAdminAuth checks serve.admin.auth and derives XFCCFrom.
func checkAdminAuth(a *AdminAuth, fail func(path, format string, args ...any)) {
	const base = "serve.admin.auth"
	seen := map[string]string{} // token -> where
	note := func(path, token string) {
		if prev, dup := seen[token]; dup {
			fail(path, "must not repeat %s (one token, one role)", prev)
			return
		}
		seen[token] = path
	}
	for i, t := range a.BearerTokens {
		path := fmt.Sprintf("%s.bearer_tokens[%d]", base, i)
		if n := len([]rune(t.Token.Value())); n < MinSecretLength {
			fail(path, "must be at least %d characters, got %d", MinSecretLength, n)
		}
		if _, err := credential.ParseRole(t.Role); err != nil {
			fail(path+".role", "%v", err)
		}
		note(path, t.Token.Value())
	}
	for i, t := range a.SidecarTokens {
		path := fmt.Sprintf("%s.sidecar_tokens[%d]", base, i)
		if n := len([]rune(t.Value())); n < MinSecretLength {
			fail(path, "must be at least %d characters, got %d", MinSecretLength, n)
		}
		note(path, t.Value())
	}
	for i, id := range a.Identities {
		path := fmt.Sprintf("%s.identities[%d]", base, i)
		var set []string
		for _, f := range []struct{ key, pattern string }{{"uri_san", id.URISAN}, {"dns_san", id.DNSSAN}, {"subject", id.Subject}} {
			if f.pattern == "" {
				continue
			}
			set = append(set, f.key)
			if err := credential.ValidIdentityPattern(f.pattern); err != nil {
				fail(path+"."+f.key, "%v", err)
			}
		}
		if len(set) != 1 {
			fail(path, "must set exactly one of uri_san, dns_san and subject (got %d)", len(set))
		}
		if id.Role == "" {
			fail(path+".role", "must be set: one of admin, operator, verifier, sidecar")
		} else if _, err := credential.ParseRole(id.Role); err != nil {
			fail(path+".role", "%v", err)
		}
	}
	a.XFCCFrom = nil
	for i, s := range a.XFCCAllowFrom {
		path := fmt.Sprintf("%s.xfcc_allow_from[%d]", base, i)
		p, err := parsePrefix(s)
		switch {
		case err != nil:
			fail(path, "must be an address or a CIDR prefix (got %q)", s)
		case p.Bits() == 0:
			fail(path, "must not be %s: it would trust x-forwarded-client-cert from any peer", s)
		default:
			if !slices.Contains(a.XFCCFrom, p) {
				a.XFCCFrom = append(a.XFCCFrom, p)
			}
		}
	}
	switch {
	case a.TrustXFCC && len(a.XFCCAllowFrom) == 0:
		fail(base+".xfcc_allow_from", "must list the mesh proxies' addresses when trust_xfcc is true: the header is trusted only from them")
	case !a.TrustXFCC && len(a.XFCCAllowFrom) > 0:
		fail(base+".trust_xfcc", "must be true when xfcc_allow_from is set")
	}
}

// parsePrefix parses a CIDR prefix or a bare address (a /32 or /128),
// masked.
func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), nil
}
