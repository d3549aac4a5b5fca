package upstream_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
	"github.com/talos-project/talos/sidecar/upstream"
)

// seenCall is what the fake control plane saw of one Verify call.
type seenCall struct {
	auth   []string
	client string // the client certificate's CN, "" without one
	tls    bool
}

// recordingVerifier answers every Verify with keyResult and reports what it
// saw of the call.
func recordingVerifier() (*fakeVerifier, chan seenCall) {
	seen := make(chan seenCall, 16)
	return &fakeVerifier{verify: func(ctx context.Context, _ *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		var c seenCall
		md, _ := metadata.FromIncomingContext(ctx)
		c.auth = md.Get("authorization")
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				c.tls = true
				if certs := info.State.PeerCertificates; len(certs) > 0 {
					c.client = certs[0].Subject.CommonName
				}
			}
		}
		seen <- c
		return apiconv.SidecarResponse(keyResult(), nil), nil
	}}, seen
}

// serverTLS is the control plane's TLS configuration: a certificate of ca
// and, with clientCAs, client certificates required.
func serverTLS(t testing.TB, ca *tlstest.CA, clientCAs *tlstest.CA) *tls.Config {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs.Pool()
	}
	return cfg
}

// wantOutage checks that a Verify failed as an outage, never a verdict.
func wantOutage(t *testing.T, res credential.Result, err error) {
	t.Helper()
	if err == nil || credential.IsVerdict(err) || !credential.IsOutage(err) || !errors.Is(err, credential.ErrUnavailable) {
		t.Fatalf("Verify = %+v, %v; want an outage (ErrUnavailable), never a verdict", res, err)
	}
	if res.KeyID != "" || res.Status != 0 {
		t.Errorf("a failed Verify returned a result: %+v", res)
	}
}

// TestClient_TLS: over TLS the client reaches a control plane whose
// certificate verifies against its CA, with its client certificate when the
// control plane asks for one, and the token goes along; a control plane it
// cannot verify (another CA, another name) or that refuses it (no client
// certificate, or one of another CA) is an outage, never a verdict, and no
// call reaches a handler.
func TestClient_TLS(t *testing.T) {
	t.Parallel()
	ca, other := tlstest.NewCA(t, "control-plane"), tlstest.NewCA(t, "other")
	sidecarCert := ca.Client(t, "talos-sidecar").TLSCertificate(t)
	foreignCert := other.Client(t, "talos-sidecar").TLSCertificate(t)
	for name, tc := range map[string]struct {
		mtls   bool
		client credentials.TransportCredentials // nil: plaintext
		ok     bool
		cn     string
		why    string // in the error, for the operator
	}{
		"TLS":                     {client: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}), ok: true},
		"TLS, server name":        {client: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}), ok: true},
		"TLS, wrong CA":           {client: credentials.NewTLS(&tls.Config{RootCAs: other.Pool()}), why: "certificate signed by unknown authority"},
		"TLS, system roots":       {client: credentials.NewTLS(&tls.Config{})},
		"TLS, wrong server name":  {client: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "control-plane.evil.example"}), why: "not control-plane.evil.example"},
		"TLS, plaintext client":   {},
		"mTLS":                    {mtls: true, client: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{sidecarCert}}), ok: true, cn: "talos-sidecar"},
		"mTLS, no client cert":    {mtls: true, client: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})},
		"mTLS, foreign cert":      {mtls: true, client: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{foreignCert}})},
		"mTLS, wrong CA and cert": {mtls: true, client: credentials.NewTLS(&tls.Config{RootCAs: other.Pool(), Certificates: []tls.Certificate{sidecarCert}})},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var clientCAs *tlstest.CA
			if tc.mtls {
				clientCAs = ca
			}
			fv, seen := recordingVerifier()
			srv := newTestServer(t, fv, nil, grpc.Creds(credentials.NewTLS(serverTLS(t, ca, clientCAs))))
			client, _ := newTestClient(t, srv.addr, upstream.Options{
				Token: "sidecar-token", TransportCredentials: tc.client, Timeout: time.Second,
			})
			res, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"})
			if !tc.ok {
				wantOutage(t, res, err)
				if !strings.Contains(err.Error(), tc.why) {
					t.Errorf("error %q does not say %q", err, tc.why)
				}
				if n := fv.calls.Load(); n != 0 {
					t.Errorf("%d calls reached the control plane's handler", n)
				}
				if client.Ready() {
					t.Error("Ready = true on a connection that cannot be secured")
				}
				return
			}
			if err != nil || res.KeyID != keyResult().KeyID {
				t.Fatalf("Verify = %+v, %v; want the key's result", res, err)
			}
			got := <-seen
			if !got.tls || got.client != tc.cn || len(got.auth) != 1 || got.auth[0] != "Bearer sidecar-token" {
				t.Errorf("the control plane saw %+v, want TLS, client CN %q and the token", got, tc.cn)
			}
			// The channel may still be settling (on a loaded machine a
			// first connection attempt can time out and be replaced while
			// a retry succeeds): Ready must turn true, soon.
			for deadline := time.Now().Add(10 * time.Second); !client.Ready(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("Ready still false 10s after a call over TLS")
				}
			}
		})
	}
}

// fakeTLS claims to be TLS but secures nothing: a transport that would
// carry the token in the clear.
type fakeTLS struct {
	credentials.TransportCredentials
}

func (fakeTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (f fakeTLS) Clone() credentials.TransportCredentials { return f }

// TestClient_TokenNeedsTransportSecurity: with transport credentials, the
// token is sent only on a connection they secured; gRPC refuses the call on
// one they did not, before anything reaches the control plane.
func TestClient_TokenNeedsTransportSecurity(t *testing.T) {
	t.Parallel()
	fv, _ := recordingVerifier()
	srv := newTestServer(t, fv, nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{
		Token: "sidecar-token", TransportCredentials: fakeTLS{insecure.NewCredentials()}, Timeout: time.Second,
	})
	res, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"})
	wantOutage(t, res, err)
	if n := fv.calls.Load(); n != 0 {
		t.Errorf("the token went out on an insecure connection: %d calls reached the handler", n)
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted chan struct{}
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}

// TestClient_Conn: Conn is the client's own connection, so a second client
// of the control plane on it (the invalidation stream) adds no connection,
// and it goes with the client's Close.
func TestClient_Conn(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "control-plane")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l, accepted: make(chan struct{}, 16)}
	fv, seen := recordingVerifier()
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS(t, ca, nil))))
	sidecarpb.RegisterVerifierServer(gs, fv)
	go func() { _ = gs.Serve(cl) }()
	t.Cleanup(gs.Stop)

	client, _ := newTestClient(t, l.Addr().String(), upstream.Options{
		Token: "sidecar-token", TransportCredentials: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}),
	})
	if _, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"}); err != nil {
		t.Fatal(err)
	}
	<-seen
	// Another client on the shared connection, as the invalidation stream is.
	other := sidecarpb.NewVerifierClient(client.Conn())
	if _, err := other.Verify(t.Context(), &sidecarpb.VerifyRequest{Credential: credPrefix + "y"}); err != nil {
		t.Fatalf("a call on Conn: %v", err)
	}
	if got := <-seen; len(got.auth) != 1 || got.auth[0] != "Bearer sidecar-token" || !got.tls {
		t.Errorf("a call on Conn carried %+v, want the token over TLS", got)
	}
	if n := len(cl.accepted); n != 1 {
		t.Errorf("the control plane accepted %d connections, want 1", n)
	}
}
