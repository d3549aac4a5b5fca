package credential_test

import (
	"testing"

	"github.com/talos-project/talos/pkg/credential"
)

func TestParseRole(t *testing.T) {
	for _, r := range credential.Roles {
		got, err := credential.ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	if got, err := credential.ParseRole(""); err != nil || got != credential.RoleAdmin {
		t.Errorf(`ParseRole("") = %v, %v; want admin`, got, err)
	}
	for _, bad := range []string{"Admin", "root", " admin", "sidecar ", "none"} {
		if got, err := credential.ParseRole(bad); err == nil || got != credential.RoleNone {
			t.Errorf("ParseRole(%q) = %v, %v; want an error", bad, got, err)
		}
	}
}

func TestMatchIdentity(t *testing.T) {
	const ops = "spiffe://cluster.local/ns/ops/sa/*"
	for _, c := range []struct {
		pattern, value string
		want           bool
	}{
		{ops, "spiffe://cluster.local/ns/ops/sa/admin", true},
		{ops, "spiffe://cluster.local/ns/ops/sa/admin/x", false},
		{ops, "spiffe://cluster.local/ns/opsx/sa/admin", false},
		{ops, "spiffe://cluster.local/ns/ops/sa/", true},
		{ops, "", false},
		{"*.ops.svc", "a.ops.svc", true},
		{"*.ops.svc", "ops.svc", false},
		{"exact", "exact", true},
		{"exact", "Exact", false},
		{"[", "[", false},
		{"", "", false},
	} {
		if got := credential.MatchIdentity(c.pattern, c.value); got != c.want {
			t.Errorf("MatchIdentity(%q, %q) = %v, want %v", c.pattern, c.value, got, c.want)
		}
	}
	for _, bad := range []string{"", "[", "a\x00", "a\nb"} {
		if credential.ValidIdentityPattern(bad) == nil {
			t.Errorf("ValidIdentityPattern(%q) = nil", bad)
		}
	}
	if err := credential.ValidIdentityPattern(ops); err != nil {
		t.Errorf("ValidIdentityPattern(%q) = %v", ops, err)
	}
}
