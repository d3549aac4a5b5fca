package grpcapi_test

import (
	"net/netip"
	"testing"

	"github.com/talos-project/talos/controlplane/grpcapi"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// BenchmarkCheck measures the rule on an admin method, with four tokens and
// four identity rules configured: a token caller, a certificate caller
// (matched by the last rule, so every rule is tried) and a caller forwarded
// in x-forwarded-client-cert by a trusted proxy.
func BenchmarkCheck(b *testing.B) {
	ca := tlstest.NewCA(b, "bench")
	a := mustAuth(b, grpcapi.AuthConfig{
		Tokens: []grpcapi.Token{
			{Value: "admin-token-0123456789abcdef0123456789", Role: credential.RoleAdmin},
			{Value: "operator-token-0123456789abcdef01234567", Role: credential.RoleOperator},
			{Value: "verifier-token-0123456789abcdef01234567", Role: credential.RoleVerifier},
			{Value: "sidecar-token-0123456789abcdef012345678", Role: credential.RoleSidecar},
		},
		Identities: []grpcapi.IdentityRule{
			{Subject: "CN=admin,O=Talos", Role: credential.RoleAdmin},
			{DNSSAN: "*.sidecars.talos.test", Role: credential.RoleSidecar},
			{URISAN: "spiffe://cluster.local/ns/verify/sa/*", Role: credential.RoleVerifier},
			{URISAN: "spiffe://cluster.local/ns/ops/sa/*", Role: credential.RoleOperator},
		},
		TrustXFCC: true,
		XFCCFrom:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	cert := verified(ca.Client(b, "deployer", "spiffe://cluster.local/ns/ops/sa/deployer"), ca)
	m := pb.ApiKeys_AdminListIssuedApiKeys_FullMethodName
	for name, c := range map[string]grpcapi.Caller{
		"token": {Authorization: "Bearer operator-token-0123456789abcdef01234567"},
		"cert":  {TLS: cert, Peer: netip.MustParseAddr("192.0.2.1")},
		"xfcc": {Peer: netip.MustParseAddr("10.0.0.1"), XFCC: []string{
			`By=spiffe://cluster.local/ns/talos/sa/cp;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="CN=deployer";URI=spiffe://cluster.local/ns/ops/sa/deployer`}},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := a.Check(m, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
