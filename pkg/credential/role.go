package credential

import (
	"fmt"
	"path"
	"strings"
)

// Role is what a caller of the control plane may do: the role of an admin
// bearer token or of a certificate identity. Which methods each role reaches
// is the control plane's auth table (controlplane/grpcapi); the names, their
// parsing and the identity patterns live here, once, for the configuration,
// the control plane and any process that checks them.
type Role uint8

// Roles. The zero Role is no role: it reaches nothing.
const (
	RoleNone Role = iota
	// RoleAdmin reaches every method.
	RoleAdmin
	// RoleOperator reaches every admin method but import and delete.
	RoleOperator
	// RoleVerifier reaches verify, batch verify and derive.
	RoleVerifier
	// RoleSidecar reaches the sidecar protocol only (Verifier and xDS).
	RoleSidecar
)

var roleNames = [...]string{RoleNone: "", RoleAdmin: "admin", RoleOperator: "operator", RoleVerifier: "verifier", RoleSidecar: "sidecar"}

// Roles lists the roles that can be configured, in order of privilege.
var Roles = []Role{RoleAdmin, RoleOperator, RoleVerifier, RoleSidecar}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// ParseRole parses a role name (admin, operator, verifier, sidecar; exact,
// lowercase). An empty name is RoleAdmin: a bearer token configured as a
// plain string means admin, as before roles existed.
func ParseRole(name string) (Role, error) {
	if name == "" {
		return RoleAdmin, nil
	}
	for _, r := range Roles {
		if roleNames[r] == name {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q: must be one of admin, operator, verifier, sidecar", name)
}

// ValidIdentityPattern checks a pattern of a certificate identity (a URI
// SAN, DNS SAN or subject, with path.Match globs: '*' matches within one
// '/'-separated segment, so spiffe://cluster.local/ns/ops/sa/* is every
// service account of the namespace ops and nothing below it).
func ValidIdentityPattern(pattern string) error {
	switch {
	case pattern == "":
		return fmt.Errorf("must not be empty")
	case strings.ContainsAny(pattern, "\x00\r\n"):
		return fmt.Errorf("must not contain NUL or line breaks")
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("invalid pattern %q: %w", pattern, err)
	}
	return nil
}

// MatchIdentity reports whether value (one URI SAN, DNS SAN or subject of a
// verified certificate) matches pattern. An empty value never matches; an
// invalid pattern matches nothing.
func MatchIdentity(pattern, value string) bool {
	if value == "" || pattern == "" {
		return false
	}
	ok, err := path.Match(pattern, value)
	return err == nil && ok
}
