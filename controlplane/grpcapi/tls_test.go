package grpcapi_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/talos-project/talos/controlplane/grpcapi"
	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// pki is a CA, the server certificate it issued, and a client certificate of
// each role, plus one from another CA.
type pki struct {
	ca, other *tlstest.CA
	server    *tlstest.Leaf
	clients   map[string]*tlstest.Leaf
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{ca: tlstest.NewCA(t, "talos-clients"), other: tlstest.NewCA(t, "evil")}
	p.server = p.ca.Server(t)
	p.clients = map[string]*tlstest.Leaf{
		"admin":    p.ca.Client(t, "root", "spiffe://cluster.local/ns/root/sa/admin"),
		"operator": p.ca.Client(t, "deployer", "spiffe://cluster.local/ns/ops/sa/deployer"),
		"verifier": p.ca.Issue(t, tlstest.Options{CommonName: "verifier", Organization: []string{"Talos"}, Client: true}),
		"sidecar":  p.ca.Issue(t, tlstest.Options{CommonName: "sc", DNS: []string{"eu1.sidecars.talos.test"}, Client: true}),
		"nobody":   p.ca.Client(t, "nobody", "spiffe://cluster.local/ns/dev/sa/x"),
		// Says admin, but another CA signed it.
		"wrong CA": p.other.Client(t, "root", "spiffe://cluster.local/ns/root/sa/admin"),
	}
	return p
}

// rules are the identity rules the TLS tests configure.
var rules = []grpcapi.IdentityRule{
	{URISAN: "spiffe://cluster.local/ns/root/sa/admin", Role: credential.RoleAdmin},
	{URISAN: "spiffe://cluster.local/ns/ops/sa/*", Role: credential.RoleOperator},
	{Subject: "CN=verifier,O=Talos", Role: credential.RoleVerifier},
	{DNSSAN: "*.sidecars.talos.test", Role: credential.RoleSidecar},
}

// reached is the terminal interceptor of the test server: a call that gets
// past the auth rule answers an empty message (every response decodes from
// it), a stream ends at once.
func reached(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
	return &emptypb.Empty{}, nil
}

func reachedStream(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error {
	return nil
}

// startTLS serves the admin API, the Verifier and xDS over TLS on a loopback
// port, behind a's tap handle and interceptors as controlplane.New wires
// them, and returns its address.
func startTLS(t *testing.T, p *pki, a *grpcapi.Auth, clientAuth tls.ClientAuthType) string {
	t.Helper()
	cfg := &tls.Config{
		Certificates: []tls.Certificate{p.server.TLSCertificate(t)},
		ClientCAs:    p.ca.Pool(),
		ClientAuth:   clientAuth,
		MinVersion:   tls.VersionTLS12,
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(cfg)),
		grpc.MaxRecvMsgSize(1<<20),
		grpc.InTapHandle(a.TapHandle()),
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor(), reached),
		grpc.ChainStreamInterceptor(a.StreamInterceptor(), reachedStream),
	)
	pb.RegisterApiKeysServer(srv, pb.UnimplementedApiKeysServer{})
	sidecarpb.RegisterVerifierServer(srv, sidecarpb.UnimplementedVerifierServer{})
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(srv, discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// clientTLS is the TLS configuration of a client that presents client
// whatever CAs the server asks for (a forger would), or none when nil.
func clientTLS(t *testing.T, p *pki, client *tlstest.Leaf) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if client != nil {
		cert := client.TLSCertificate(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg
}

// dial connects to addr over TLS, presenting client when it is not nil.
func dial(t *testing.T, p *pki, addr string, client *tlstest.Leaf) *grpc.ClientConn {
	t.Helper()
	cfg := clientTLS(t, p, client)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// grpcCalls are the calls the TLS tests make, by name.
var grpcCalls = map[string]func(ctx context.Context, conn *grpc.ClientConn) error{
	"issue": func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewApiKeysClient(conn).AdminIssueApiKey(ctx, &pb.IssueApiKeyRequest{})
		return err
	},
	"delete": func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewApiKeysClient(conn).AdminDeleteImportedApiKey(ctx, &pb.AdminDeleteImportedApiKeyRequest{})
		return err
	},
	"import": func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewApiKeysClient(conn).AdminImportApiKey(ctx, &pb.ImportApiKeyRequest{})
		return err
	},
	"verify": func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewApiKeysClient(conn).AdminVerifyApiKey(ctx, &pb.VerifyApiKeyRequest{})
		return err
	},
	"sidecar verify": func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := sidecarpb.NewVerifierClient(conn).Verify(ctx, &sidecarpb.VerifyRequest{})
		return err
	},
	"xds": func(ctx context.Context, conn *grpc.ClientConn) error {
		st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	},
}

func callCode(t *testing.T, conn *grpc.ClientConn, call string, md ...string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	return status.Code(grpcCalls[call](ctx, conn))
}

// TestGRPC_TLSRoles: over real TLS connections, each client certificate
// reaches what its role does; a certificate from another CA never gets a
// connection; no certificate is unauthenticated.
func TestGRPC_TLSRoles(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	a := mustAuth(t, grpcapi.AuthConfig{Identities: rules})
	addr := startTLS(t, p, a, tls.VerifyClientCertIfGiven)
	want := map[string]map[string]codes.Code{
		"admin":    {"issue": ok, "delete": ok, "import": ok, "verify": ok, "sidecar verify": ok, "xds": ok},
		"operator": {"issue": ok, "delete": deny, "import": deny, "verify": ok, "sidecar verify": deny, "xds": deny},
		"verifier": {"issue": deny, "delete": deny, "import": deny, "verify": ok, "sidecar verify": deny, "xds": deny},
		"sidecar":  {"issue": deny, "delete": deny, "import": deny, "verify": deny, "sidecar verify": ok, "xds": ok},
		"nobody":   {"issue": unauth, "delete": unauth, "verify": unauth, "sidecar verify": unauth, "xds": unauth},
		"none":     {"issue": unauth, "delete": unauth, "verify": unauth, "sidecar verify": unauth, "xds": unauth},
		// The handshake fails: nothing is served, nothing is trusted.
		"wrong CA": {"issue": codes.Unavailable, "sidecar verify": codes.Unavailable},
	}
	for who, calls := range want {
		conn := dial(t, p, addr, p.clients[who])
		for call, code := range calls {
			if got := callCode(t, conn, call); got != code {
				t.Errorf("%s certificate, %s: %v, want %v", who, call, got, code)
			}
		}
	}
}

// TestGRPC_UnverifiedCertificateProvesNothing: on a listener that asks for
// a certificate without verifying it (client_auth: request), the peer
// certificates are there but no verified chain: an admin certificate from
// another CA proves nothing.
func TestGRPC_UnverifiedCertificateProvesNothing(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	addr := startTLS(t, p, mustAuth(t, grpcapi.AuthConfig{Identities: rules}), tls.RequestClientCert)
	forged := dial(t, p, addr, p.clients["wrong CA"])
	for _, call := range []string{"issue", "delete", "sidecar verify", "xds"} {
		if got := callCode(t, forged, call); got != unauth {
			t.Errorf("unverified admin certificate, %s: %v, want Unauthenticated", call, got)
		}
	}
	// The same listener verifies nothing, so even our own CA's admin
	// certificate has no verified chain here.
	if got := callCode(t, dial(t, p, addr, p.clients["admin"]), "issue"); got != unauth {
		t.Errorf("admin certificate on a listener that verifies none: %v, want Unauthenticated", got)
	}
}

// TestGRPC_TokenAndCertificateAddUp: a caller's roles are the union of its
// token's and its certificate's.
func TestGRPC_TokenAndCertificateAddUp(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	a := mustAuth(t, grpcapi.AuthConfig{
		Tokens:     []grpcapi.Token{{Value: "sidecar-token", Role: credential.RoleSidecar}, {Value: "admin-token", Role: credential.RoleAdmin}},
		Identities: rules,
	})
	addr := startTLS(t, p, a, tls.VerifyClientCertIfGiven)
	verifier, none := dial(t, p, addr, p.clients["verifier"]), dial(t, p, addr, nil)
	side := []string{"authorization", "Bearer sidecar-token"}
	for _, tc := range []struct {
		name string
		conn *grpc.ClientConn
		md   []string
		want map[string]codes.Code
	}{
		{"verifier cert", verifier, nil, map[string]codes.Code{"verify": ok, "sidecar verify": deny, "issue": deny}},
		{"sidecar token", none, side, map[string]codes.Code{"verify": deny, "sidecar verify": ok, "issue": deny}},
		{"verifier cert + sidecar token", verifier, side, map[string]codes.Code{"verify": ok, "sidecar verify": ok, "xds": ok, "issue": deny}},
		{"verifier cert + unknown token", verifier, []string{"authorization", "Bearer nope"}, map[string]codes.Code{"verify": ok, "issue": deny}},
		{"no cert, admin token", none, []string{"authorization", "Bearer admin-token"}, map[string]codes.Code{"delete": ok, "xds": ok}},
	} {
		for call, code := range tc.want {
			if got := callCode(t, tc.conn, call, tc.md...); got != code {
				t.Errorf("%s, %s: %v, want %v", tc.name, call, got, code)
			}
		}
	}
}

// TestGRPC_TapChecksTheCertificate: the tap handle, which runs before a
// message is read, sees the certificate: an oversized request from a caller
// whose certificate reaches the method is read (and refused as too large);
// from a caller without one, or whose role does not reach it, it is refused
// before it is read.
func TestGRPC_TapChecksTheCertificate(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	addr := startTLS(t, p, mustAuth(t, grpcapi.AuthConfig{Identities: rules}), tls.VerifyClientCertIfGiven)
	big := &pb.VerifyApiKeyRequest{Credential: strings.Repeat("x", 2<<20)}
	for who, want := range map[string]codes.Code{"verifier": codes.ResourceExhausted, "sidecar": deny, "none": unauth} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := pb.NewApiKeysClient(dial(t, p, addr, p.clients[who])).AdminVerifyApiKey(ctx, big, grpc.MaxCallSendMsgSize(4<<20))
		cancel()
		if got := status.Code(err); got != want {
			t.Errorf("oversized verify, %s certificate: %v, want %v", who, got, want)
		}
	}
}

// TestGRPC_XFCC: from a peer in the XFCC prefixes, the forwarded identity
// counts instead of the connection's certificate; from any other peer the
// header is ignored (a client cannot forge an identity with it).
func TestGRPC_XFCC(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	const adminXFCC = `By=spiffe://cluster.local/ns/talos/sa/cp;Hash=00;URI=spiffe://cluster.local/ns/root/sa/admin`
	const operatorXFCC = `By=spiffe://cluster.local/ns/talos/sa/cp;Hash=00;URI=spiffe://cluster.local/ns/ops/sa/deployer`
	trusted := startTLS(t, p, mustAuth(t, grpcapi.AuthConfig{Identities: rules, TrustXFCC: true,
		XFCCFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}), tls.VerifyClientCertIfGiven)
	untrusted := startTLS(t, p, mustAuth(t, grpcapi.AuthConfig{Identities: rules, TrustXFCC: true,
		XFCCFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}), tls.VerifyClientCertIfGiven)
	for _, tc := range []struct {
		name, addr, client, xfcc string
		issue, del               codes.Code
	}{
		{"trusted peer, operator forwarded", trusted, "", operatorXFCC, ok, deny},
		{"trusted peer, admin forwarded", trusted, "", adminXFCC, ok, ok},
		{"trusted peer, operator forwarded, the proxy's own cert is admin", trusted, "admin", operatorXFCC, ok, deny},
		{"trusted peer, nothing forwarded, the proxy's own cert is admin", trusted, "admin", "", unauth, unauth},
		{"trusted peer, malformed", trusted, "admin", adminXFCC + `;Subject="`, unauth, unauth},
		{"untrusted peer, forged admin", untrusted, "", adminXFCC, unauth, unauth},
		{"untrusted peer, operator cert, forged admin", untrusted, "operator", adminXFCC, ok, deny},
	} {
		var md []string
		if tc.xfcc != "" {
			md = []string{grpcapi.XFCCHeader, tc.xfcc}
		}
		conn := dial(t, p, tc.addr, p.clients[tc.client])
		if got := callCode(t, conn, "issue", md...); got != tc.issue {
			t.Errorf("%s, issue: %v, want %v", tc.name, got, tc.issue)
		}
		if got := callCode(t, conn, "delete", md...); got != tc.del {
			t.Errorf("%s, delete: %v, want %v", tc.name, got, tc.del)
		}
	}
}

// TestGRPC_AuthEnvelopes: over TLS, the 401 and 403 statuses carry the
// AIP-193 ErrorInfo.
func TestGRPC_AuthEnvelopes(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	addr := startTLS(t, p, mustAuth(t, grpcapi.AuthConfig{Identities: rules}), tls.VerifyClientCertIfGiven)
	for _, tc := range []struct {
		client string
		code   codes.Code
		reason string
	}{{"", unauth, "UNAUTHORIZED"}, {"nobody", unauth, "UNAUTHORIZED"}, {"sidecar", deny, "FORBIDDEN"}, {"verifier", deny, "FORBIDDEN"}} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := pb.NewApiKeysClient(dial(t, p, addr, p.clients[tc.client])).AdminIssueApiKey(ctx, &pb.IssueApiKeyRequest{})
		cancel()
		st := status.Convert(err)
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if st.Code() != tc.code || info == nil || info.GetReason() != tc.reason || info.GetDomain() == "" {
			t.Errorf("%q certificate: %v %v, want %v with ErrorInfo %s", tc.client, st.Code(), st.Details(), tc.code, tc.reason)
		}
	}
}
