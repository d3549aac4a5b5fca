package grpcapi_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/controlplane/grpcapi"
	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

const (
	ok     = codes.OK
	unauth = codes.Unauthenticated
	deny   = codes.PermissionDenied
)

func bearer(tok string) grpcapi.Caller { return grpcapi.Caller{Authorization: "Bearer " + tok} }

func mustAuth(t testing.TB, c grpcapi.AuthConfig) *grpcapi.Auth {
	t.Helper()
	a, err := grpcapi.NewAuth(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// verified is the TLS state of a connection whose client certificate leaf
// verified (against ca).
func verified(leaf *tlstest.Leaf, ca *tlstest.CA) *tls.ConnectionState {
	return &tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{leaf.Cert},
		VerifiedChains:   [][]*x509.Certificate{{leaf.Cert, ca.Cert}},
	}
}

// TestAuthCheck_Tokens is the rule of static tokens, surface by surface,
// configuration by configuration, caller by caller: today's behaviour, kept.
func TestAuthCheck_Tokens(t *testing.T) {
	t.Parallel()
	configs := map[string]*grpcapi.Auth{
		"nil": nil, "zero": {}, "none": grpcapi.NewTokenAuth(nil, []string{""}),
		"admin":   grpcapi.NewTokenAuth([]string{"admin-token"}, nil),
		"sidecar": grpcapi.NewTokenAuth(nil, []string{"sidecar-token"}),
		"both":    grpcapi.NewTokenAuth([]string{"admin-token"}, []string{"sidecar-token"}),
	}
	open := [4]codes.Code{ok, ok, ok, ok}
	// want[config] = codes for callers none, wrong, admin, sidecar.
	matrix := map[grpcapi.Surface]map[string][4]codes.Code{
		grpcapi.SurfaceAdmin: {
			"nil": open, "zero": open, "none": open, "admin": {unauth, unauth, ok, unauth},
			"sidecar": {ok, ok, ok, deny}, "both": {unauth, unauth, ok, deny},
		},
		grpcapi.SurfaceSidecar: {
			"nil": open, "zero": open, "none": open, "admin": {unauth, unauth, ok, unauth},
			"sidecar": {unauth, unauth, unauth, ok}, "both": {unauth, unauth, ok, ok},
		},
		grpcapi.SurfacePublic: {"nil": open, "zero": open, "none": open, "admin": open, "sidecar": open, "both": open},
	}
	methods := map[grpcapi.Surface][]string{
		grpcapi.SurfaceAdmin:   {pb.ApiKeys_AdminIssueApiKey_FullMethodName, pb.ApiKeys_AdminVerifyApiKey_FullMethodName, pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName},
		grpcapi.SurfaceSidecar: {sidecarpb.Verifier_Verify_FullMethodName, "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"},
		grpcapi.SurfacePublic:  {pb.SelfService_RevokeApiKey_FullMethodName, pb.DerivedKeys_GetJwks_FullMethodName, "/grpc.health.v1.Health/Check"},
	}
	callers := []grpcapi.Caller{{}, bearer("wrong-token"), bearer("admin-token"), bearer("sidecar-token")}
	for surface, byConfig := range matrix {
		for name, want := range byConfig {
			for i, caller := range callers {
				for _, m := range methods[surface] {
					if got := status.Code(configs[name].Check(m, caller)); got != want[i] {
						t.Errorf("%s, config %s, caller %q: %v, want %v", m, name, caller.Authorization, got, want[i])
					}
				}
			}
		}
	}
	for _, m := range []string{"/talos.v2alpha1.ApiKeys/AdminNew", "/grpc.channelz.v1.Channelz/GetTopChannels", "", "talos.v2alpha1.ApiKeys/AdminIssueApiKey"} {
		for name, a := range configs {
			if got := status.Code(a.Check(m, bearer("admin-token"))); got != codes.Unimplemented {
				t.Errorf("unknown method %q, config %s: %v, want Unimplemented", m, name, got)
			}
		}
	}
	a := configs["admin"]
	for authz, want := range map[string]codes.Code{
		"Bearer admin-token": ok, "bearer admin-token": ok, "BEARER admin-token": ok, "Bearer admin-token ": unauth,
		"admin-token": unauth, "Basic admin-token": unauth, "Bearer ": unauth, "Bearer  admin-token": unauth, "Bearer admin": unauth,
	} {
		if got := status.Code(a.Check(pb.ApiKeys_AdminIssueApiKey_FullMethodName, grpcapi.Caller{Authorization: authz})); got != want {
			t.Errorf("Authorization %q: %v, want %v", authz, got, want)
		}
	}
}

// wantRoles is the role table, written out: every method of the auth table
// must be here, so that adding a method forces a decision.
var wantRoles = map[string][]credential.Role{
	pb.ApiKeys_AdminIssueApiKey_FullMethodName:                {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminGetIssuedApiKey_FullMethodName:            {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminListIssuedApiKeys_FullMethodName:          {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminUpdateIssuedApiKey_FullMethodName:         {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminRotateIssuedApiKey_FullMethodName:         {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminRevokeIssuedApiKey_FullMethodName:         {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminImportApiKey_FullMethodName:               {credential.RoleAdmin},
	pb.ApiKeys_AdminBatchCreateImportedApiKeys_FullMethodName: {credential.RoleAdmin},
	pb.ApiKeys_AdminGetImportedApiKey_FullMethodName:          {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminListImportedApiKeys_FullMethodName:        {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminUpdateImportedApiKey_FullMethodName:       {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminRevokeImportedApiKey_FullMethodName:       {credential.RoleAdmin, credential.RoleOperator},
	pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName:       {credential.RoleAdmin},
	pb.ApiKeys_AdminVerifyApiKey_FullMethodName:               {credential.RoleAdmin, credential.RoleOperator, credential.RoleVerifier},
	pb.ApiKeys_AdminBatchVerifyApiKeys_FullMethodName:         {credential.RoleAdmin, credential.RoleOperator, credential.RoleVerifier},
	pb.ApiKeys_AdminDeriveToken_FullMethodName:                {credential.RoleAdmin, credential.RoleOperator, credential.RoleVerifier},

	sidecarpb.Verifier_Verify_FullMethodName:                                           {credential.RoleAdmin, credential.RoleSidecar},
	sidecarpb.Verifier_BatchVerify_FullMethodName:                                      {credential.RoleAdmin, credential.RoleSidecar},
	sidecarpb.Verifier_GetTokenPolicy_FullMethodName:                                   {credential.RoleAdmin, credential.RoleSidecar},
	"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources":  {credential.RoleAdmin, credential.RoleSidecar},
	"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources": {credential.RoleAdmin, credential.RoleSidecar},

	// Public: every role, and no credential at all.
	pb.SelfService_RevokeApiKey_FullMethodName:                       credential.Roles,
	pb.DerivedKeys_GetJwks_FullMethodName:                            credential.Roles,
	"/grpc.health.v1.Health/Check":                                   credential.Roles,
	"/grpc.health.v1.Health/Watch":                                   credential.Roles,
	"/grpc.health.v1.Health/List":                                    credential.Roles,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      credential.Roles,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": credential.Roles,
}

// TestRoleMethodTable: every role × every method of the table, through
// Allows and through Check with a token of the role (every surface
// enforced), and through Check with a certificate identity of the role.
func TestRoleMethodTable(t *testing.T) {
	t.Parallel()
	for _, m := range grpcapi.Methods() {
		if _, ok := wantRoles[m]; !ok {
			t.Errorf("%s is in the auth table but not in wantRoles: decide which roles reach it", m)
		}
	}
	if got := len(grpcapi.Methods()); got != len(wantRoles) {
		t.Errorf("the auth table has %d methods, wantRoles %d", got, len(wantRoles))
	}
	ca := tlstest.NewCA(t, "roles")
	var cfg grpcapi.AuthConfig
	certs := map[credential.Role]*tls.ConnectionState{}
	for _, r := range credential.Roles {
		cfg.Tokens = append(cfg.Tokens, grpcapi.Token{Value: "token-" + r.String(), Role: r})
		uri := "spiffe://talos.test/role/" + r.String()
		cfg.Identities = append(cfg.Identities, grpcapi.IdentityRule{URISAN: uri, Role: r})
		certs[r] = verified(ca.Client(t, r.String(), uri), ca)
	}
	a := mustAuth(t, cfg)
	for m, roles := range wantRoles {
		public := grpcapi.SurfaceOf(m) == grpcapi.SurfacePublic
		for _, r := range credential.Roles {
			want := slices.Contains(roles, r)
			if got := grpcapi.Allows(r, m); got != want {
				t.Errorf("Allows(%s, %s) = %v, want %v", r, m, got, want)
			}
			wantCode := deny
			if want {
				wantCode = ok
			}
			if got := status.Code(a.Check(m, bearer("token-"+r.String()))); got != wantCode {
				t.Errorf("%s token on %s: %v, want %v", r, m, got, wantCode)
			}
			if got := status.Code(a.Check(m, grpcapi.Caller{TLS: certs[r]})); got != wantCode {
				t.Errorf("%s certificate on %s: %v, want %v", r, m, got, wantCode)
			}
		}
		wantAnon := unauth
		if public {
			wantAnon = ok
		}
		if got := status.Code(a.Check(m, grpcapi.Caller{})); got != wantAnon {
			t.Errorf("no credential on %s: %v, want %v", m, got, wantAnon)
		}
		if grpcapi.Allows(credential.RoleNone, m) != public {
			t.Errorf("RoleNone reaches %s", m)
		}
	}
}

// TestEveryServedMethodIsListed: every method of every service a control
// plane serves has a surface.
func TestEveryServedMethodIsListed(t *testing.T) {
	t.Parallel()
	for _, d := range []grpc.ServiceDesc{pb.ApiKeys_ServiceDesc, pb.SelfService_ServiceDesc, pb.DerivedKeys_ServiceDesc, sidecarpb.Verifier_ServiceDesc} {
		for _, m := range d.Methods {
			if full := "/" + d.ServiceName + "/" + m.MethodName; grpcapi.SurfaceOf(full) == grpcapi.SurfaceUnknown {
				t.Errorf("%s is not in the auth table", full)
			}
		}
	}
	missing := grpcapi.Unlisted(map[string]grpc.ServiceInfo{
		"talos.v2alpha1.ApiKeys": {Methods: []grpc.MethodInfo{{Name: "AdminIssueApiKey"}, {Name: "AdminNew"}}},
	})
	if len(missing) != 1 || missing[0] != "/talos.v2alpha1.ApiKeys/AdminNew" {
		t.Errorf("Unlisted = %v", missing)
	}
}

func TestNewAuth_Validates(t *testing.T) {
	t.Parallel()
	lo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for name, c := range map[string]grpcapi.AuthConfig{
		"empty token":          {Tokens: []grpcapi.Token{{Value: "", Role: credential.RoleAdmin}}},
		"token without role":   {Tokens: []grpcapi.Token{{Value: "t"}}},
		"token of a bad role":  {Tokens: []grpcapi.Token{{Value: "t", Role: credential.Role(9)}}},
		"rule without pattern": {Identities: []grpcapi.IdentityRule{{Role: credential.RoleAdmin}}},
		"rule with two":        {Identities: []grpcapi.IdentityRule{{URISAN: "spiffe://a/b", DNSSAN: "a.b", Role: credential.RoleAdmin}}},
		"rule with bad glob":   {Identities: []grpcapi.IdentityRule{{URISAN: "spiffe://a/[", Role: credential.RoleAdmin}}},
		"rule with newline":    {Identities: []grpcapi.IdentityRule{{Subject: "CN=a\n", Role: credential.RoleAdmin}}},
		"rule without role":    {Identities: []grpcapi.IdentityRule{{DNSSAN: "a.b"}}},
		"xfcc without peers":   {TrustXFCC: true},
		"peers without xfcc":   {XFCCFrom: lo},
		"invalid peer prefix":  {TrustXFCC: true, XFCCFrom: []netip.Prefix{{}}},
	} {
		if _, err := grpcapi.NewAuth(c); err == nil {
			t.Errorf("%s: NewAuth accepted it", name)
		}
	}
	a := mustAuth(t, grpcapi.AuthConfig{
		Tokens:     []grpcapi.Token{{Value: "t", Role: credential.RoleOperator}},
		Identities: []grpcapi.IdentityRule{{Subject: "CN=*,O=Talos", Role: credential.RoleVerifier}},
		TrustXFCC:  true, XFCCFrom: lo,
	})
	if !a.AdminEnforced() || !a.SidecarEnforced() {
		t.Error("an operator token must enforce both surfaces")
	}
}

// TestAuth_OpenOrEnforced: which configured credentials enforce which
// surface.
func TestAuth_OpenOrEnforced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		roles          []credential.Role
		admin, sidecar bool
	}{
		{nil, false, false},
		{[]credential.Role{credential.RoleSidecar}, false, true},
		{[]credential.Role{credential.RoleVerifier}, true, true},
		{[]credential.Role{credential.RoleOperator}, true, true},
		{[]credential.Role{credential.RoleAdmin}, true, true},
		{[]credential.Role{credential.RoleSidecar, credential.RoleVerifier}, true, true},
	} {
		for _, kind := range []string{"token", "identity"} {
			var c grpcapi.AuthConfig
			for _, r := range tc.roles {
				if kind == "token" {
					c.Tokens = append(c.Tokens, grpcapi.Token{Value: "t-" + r.String(), Role: r})
				} else {
					c.Identities = append(c.Identities, grpcapi.IdentityRule{DNSSAN: r.String() + ".talos.test", Role: r})
				}
			}
			a := mustAuth(t, c)
			if a.AdminEnforced() != tc.admin || a.SidecarEnforced() != tc.sidecar {
				t.Errorf("%v as %s: admin enforced %v, sidecar %v; want %v, %v", tc.roles, kind, a.AdminEnforced(), a.SidecarEnforced(), tc.admin, tc.sidecar)
			}
			wantAdmin, wantSidecar := ok, ok
			if tc.admin {
				wantAdmin = unauth
			}
			if tc.sidecar {
				wantSidecar = unauth
			}
			if got := status.Code(a.Check(pb.ApiKeys_AdminIssueApiKey_FullMethodName, bearer("unknown"))); got != wantAdmin {
				t.Errorf("%v as %s: unknown caller on the admin API: %v, want %v", tc.roles, kind, got, wantAdmin)
			}
			if got := status.Code(a.Check(sidecarpb.Verifier_Verify_FullMethodName, grpcapi.Caller{})); got != wantSidecar {
				t.Errorf("%v as %s: unknown caller on the sidecar protocol: %v, want %v", tc.roles, kind, got, wantSidecar)
			}
		}
	}
}

// TestAuthCheck_Certificates: identities come from the verified leaf only,
// match by subject, URI SAN or DNS SAN globs, and add up with tokens.
func TestAuthCheck_Certificates(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "identities")
	a := mustAuth(t, grpcapi.AuthConfig{
		Tokens: []grpcapi.Token{{Value: "sidecar-token", Role: credential.RoleSidecar}},
		Identities: []grpcapi.IdentityRule{
			{URISAN: "spiffe://cluster.local/ns/ops/sa/*", Role: credential.RoleOperator},
			{Subject: "CN=verifier-*,O=Talos", Role: credential.RoleVerifier},
			{DNSSAN: "*.sidecars.talos.test", Role: credential.RoleSidecar},
			{URISAN: "spiffe://cluster.local/ns/root/sa/admin", Role: credential.RoleAdmin},
		},
	})
	ops := ca.Client(t, "someone", "spiffe://cluster.local/ns/ops/sa/deployer")
	opsDeep := ca.Client(t, "someone", "spiffe://cluster.local/ns/ops/sa/deployer/x")
	ver := ca.Issue(t, tlstest.Options{CommonName: "verifier-1", Organization: []string{"Talos"}, Client: true})
	verOtherOrg := ca.Issue(t, tlstest.Options{CommonName: "verifier-1", Organization: []string{"Evil"}, Client: true})
	side := ca.Issue(t, tlstest.Options{CommonName: "x", DNS: []string{"a.example", "eu1.sidecars.talos.test"}, Client: true})
	admin := ca.Client(t, "root", "spiffe://cluster.local/ns/root/sa/admin")
	nobody := ca.Client(t, "nobody", "spiffe://cluster.local/ns/dev/sa/x")

	issue, del, verify, verifier := pb.ApiKeys_AdminIssueApiKey_FullMethodName, pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName,
		pb.ApiKeys_AdminVerifyApiKey_FullMethodName, sidecarpb.Verifier_Verify_FullMethodName
	for _, tc := range []struct {
		name   string
		caller grpcapi.Caller
		want   map[string]codes.Code
	}{
		{"operator by URI glob", grpcapi.Caller{TLS: verified(ops, ca)}, map[string]codes.Code{issue: ok, del: deny, verify: ok, verifier: deny}},
		{"a glob stops at a slash", grpcapi.Caller{TLS: verified(opsDeep, ca)}, map[string]codes.Code{issue: unauth, verifier: unauth}},
		{"verifier by subject", grpcapi.Caller{TLS: verified(ver, ca)}, map[string]codes.Code{issue: deny, del: deny, verify: ok, verifier: deny}},
		{"subject of another O", grpcapi.Caller{TLS: verified(verOtherOrg, ca)}, map[string]codes.Code{verify: unauth}},
		{"sidecar by DNS SAN", grpcapi.Caller{TLS: verified(side, ca)}, map[string]codes.Code{issue: deny, verify: deny, verifier: ok}},
		{"admin", grpcapi.Caller{TLS: verified(admin, ca)}, map[string]codes.Code{issue: ok, del: ok, verify: ok, verifier: ok}},
		{"a certificate matching no rule", grpcapi.Caller{TLS: verified(nobody, ca)}, map[string]codes.Code{issue: unauth, verifier: unauth}},
		// The certificate was presented but did not verify: it proves
		// nothing, whatever it says.
		{"unverified admin certificate", grpcapi.Caller{TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{admin.Cert}}},
			map[string]codes.Code{issue: unauth, del: unauth, verifier: unauth}},
		{"plaintext", grpcapi.Caller{}, map[string]codes.Code{issue: unauth, verifier: unauth}},
		// Union: a verifier certificate and a sidecar token reach both
		// verify methods; each alone reaches one.
		{"verifier cert + sidecar token", grpcapi.Caller{TLS: verified(ver, ca), Authorization: "Bearer sidecar-token"},
			map[string]codes.Code{issue: deny, verify: ok, verifier: ok}},
		{"sidecar token alone", bearer("sidecar-token"), map[string]codes.Code{verify: deny, verifier: ok}},
		{"operator cert + unknown token", grpcapi.Caller{TLS: verified(ops, ca), Authorization: "Bearer nope"}, map[string]codes.Code{issue: ok}},
		// An XFCC header from a peer that is not trusted (XFCC is off here)
		// is ignored: the connection's own certificate counts.
		{"XFCC from an untrusted peer", grpcapi.Caller{TLS: verified(ver, ca), Peer: netip.MustParseAddr("127.0.0.1"),
			XFCC: []string{`Hash=ab;URI=spiffe://cluster.local/ns/root/sa/admin`}}, map[string]codes.Code{del: deny, verify: ok}},
		{"XFCC alone from an untrusted peer", grpcapi.Caller{Peer: netip.MustParseAddr("127.0.0.1"),
			XFCC: []string{`Hash=ab;URI=spiffe://cluster.local/ns/root/sa/admin`}}, map[string]codes.Code{del: unauth}},
	} {
		for m, want := range tc.want {
			if got := status.Code(a.Check(m, tc.caller)); got != want {
				t.Errorf("%s on %s: %v, want %v", tc.name, m, got, want)
			}
		}
	}
}

// TestAuthCheck_XFCC: from a peer in the XFCC prefixes, the identity is the
// last element of the header, and replaces the peer's own certificate; from
// any other peer the header is ignored.
func TestAuthCheck_XFCC(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "mesh")
	envoy := verified(ca.Client(t, "envoy", "spiffe://cluster.local/ns/root/sa/admin"), ca) // the proxy's own cert matches admin
	a := mustAuth(t, grpcapi.AuthConfig{
		Identities: []grpcapi.IdentityRule{
			{URISAN: "spiffe://cluster.local/ns/ops/sa/*", Role: credential.RoleOperator},
			{URISAN: "spiffe://cluster.local/ns/root/sa/admin", Role: credential.RoleAdmin},
			{Subject: "CN=verifier,O=Talos", Role: credential.RoleVerifier},
		},
		TrustXFCC: true,
		XFCCFrom:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
	})
	trusted, mapped, trusted6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:10.1.2.3"), netip.MustParseAddr("2001:db8::7")
	other := netip.MustParseAddr("192.0.2.1")
	const opsElement = `By=spiffe://cluster.local/ns/talos/sa/cp;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="";URI=spiffe://cluster.local/ns/ops/sa/deployer`
	const adminElement = `By=spiffe://x;Hash=aa;URI=spiffe://cluster.local/ns/root/sa/admin`
	issue, del := pb.ApiKeys_AdminIssueApiKey_FullMethodName, pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName
	for _, tc := range []struct {
		name      string
		peer      netip.Addr
		tls       *tls.ConnectionState
		xfcc      []string
		issue, dl codes.Code
	}{
		{"trusted, operator", trusted, nil, []string{opsElement}, ok, deny},
		{"trusted (v4-mapped), operator", mapped, nil, []string{opsElement}, ok, deny},
		{"trusted v6, operator", trusted6, nil, []string{opsElement}, ok, deny},
		{"the last element counts", trusted, nil, []string{adminElement + "," + opsElement}, ok, deny},
		{"the last element counts, over two values", trusted, nil, []string{adminElement, opsElement}, ok, deny},
		{"the last element counts, admin last", trusted, nil, []string{opsElement, adminElement}, ok, ok},
		{"XFCC replaces the proxy's own certificate", trusted, envoy, []string{opsElement}, ok, deny},
		{"no header: no identity, not the proxy's", trusted, envoy, nil, unauth, unauth},
		{"malformed: no identity, not the proxy's", trusted, envoy, []string{opsElement + `;Subject="x`}, unauth, unauth},
		{"malformed earlier element: none at all", trusted, nil, []string{`URI=a;;` + "," + adminElement}, unauth, unauth},
		{"subject", trusted, nil, []string{`Hash=aa;Subject="CN=verifier,O=Talos"`}, deny, deny},
		{"untrusted peer: header ignored", other, nil, []string{adminElement}, unauth, unauth},
		{"untrusted peer: its own certificate", other, envoy, []string{opsElement}, ok, ok},
		{"unknown peer: header ignored", netip.Addr{}, nil, []string{adminElement}, unauth, unauth},
	} {
		c := grpcapi.Caller{Peer: tc.peer, TLS: tc.tls, XFCC: tc.xfcc}
		if got := status.Code(a.Check(issue, c)); got != tc.issue {
			t.Errorf("%s: issue %v, want %v", tc.name, got, tc.issue)
		}
		if got := status.Code(a.Check(del, c)); got != tc.dl {
			t.Errorf("%s: delete %v, want %v", tc.name, got, tc.dl)
		}
	}
	// Over the size bound, the header proves nothing.
	big := []string{strings.Repeat("DNS=a;", 3000) + "URI=spiffe://cluster.local/ns/root/sa/admin"}
	if got := status.Code(a.Check(issue, grpcapi.Caller{Peer: trusted, XFCC: big})); got != unauth {
		t.Errorf("oversized XFCC: %v, want Unauthenticated", got)
	}
}

// TestAuthCheck_Envelope: the refusals carry the AIP-193 ErrorInfo and a
// message that says nothing of which check failed.
func TestAuthCheck_Envelope(t *testing.T) {
	t.Parallel()
	a := grpcapi.NewTokenAuth([]string{"admin-token"}, []string{"sidecar-token"})
	for _, tc := range []struct {
		caller grpcapi.Caller
		code   codes.Code
		reason string
	}{
		{grpcapi.Caller{}, unauth, "UNAUTHORIZED"},
		{bearer("wrong"), unauth, "UNAUTHORIZED"},
		{bearer("sidecar-token"), deny, "FORBIDDEN"},
	} {
		st := status.Convert(a.Check(pb.ApiKeys_AdminIssueApiKey_FullMethodName, tc.caller))
		if st.Code() != tc.code {
			t.Fatalf("%q: %v, want %v", tc.caller.Authorization, st.Code(), tc.code)
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info == nil || info.GetReason() != tc.reason || info.GetDomain() == "" {
			t.Errorf("%q: details %v, want ErrorInfo reason %s", tc.caller.Authorization, st.Details(), tc.reason)
		}
		if m := strings.ToLower(st.Message()); strings.Contains(m, "token") || strings.Contains(m, "sidecar") || strings.Contains(m, "certificate") || strings.Contains(m, "role") {
			t.Errorf("message %q says which check failed", st.Message())
		}
	}
}
