package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/pkg/tlsconf"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// A client trusting another CA never completes a handshake, over
// DialContext, Config or gRPC.
func TestClient_WrongCA(t *testing.T) {
	ca, wrong := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "wrong")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: wrong.WriteCA(t, dir, "wrong.crt")})
	if err != nil {
		t.Fatal(err)
	}

	addr, results := serveHandshakes(t, s.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.DialContext(ctx, "tcp", addr)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("DialContext: %v, want an unknown authority error", err)
	}
	if conn != nil {
		t.Fatal("a connection with the error")
	}
	<-results
	if clientErr, _, _ := dial(t, addr, results, c.Config()); !errors.As(clientErr, &unknown) {
		t.Fatalf("Config: %v, want an unknown authority error", clientErr)
	}

	grpcAddr := serveGRPC(t, newTrackingListener(t), s, &peerLog{})
	gc := dialGRPC(t, grpcAddr, c.TransportCredentials())
	for range 3 {
		if err := checkHealth(gc); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("health check: %v, want UNAVAILABLE for the certificate", err)
		}
	}
}

// Rotating the CA file (a new CA, and a server certificate from it) reaches
// a long-lived grpc.ClientConn when it reconnects, and only after the
// client's next check: until then the new server certificate is refused.
func TestClient_CARotation(t *testing.T) {
	ca1, ca2 := tlstest.NewCA(t, "ca1"), tlstest.NewCA(t, "ca2")
	dir := t.TempDir()
	leaf1, leaf2 := ca1.Server(t), ca2.Server(t)
	certFile, keyFile := leaf1.Write(t, dir, "server")
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, caFile, ca1.PEM)

	s, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, CheckInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	ln := newTrackingListener(t)
	addr := serveGRPC(t, ln, s, &peerLog{})
	clk := newClock()
	c, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: caFile, CheckInterval: time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	conn := dialGRPC(t, addr, c.TransportCredentials(), fastReconnect)
	if err := checkHealth(conn); err != nil {
		t.Fatal(err)
	}

	leaf2.Write(t, dir, "server")
	writeFile(t, caFile, ca2.PEM)
	// Until the client checks its files, the established connection goes on
	// with the old session and a new connection refuses ca2.
	if err := checkHealth(conn); err != nil {
		t.Fatalf("established connection: %v", err)
	}
	ln.cut()
	eventually(t, "the reconnection refused", func() bool {
		return status.Code(checkHealth(conn)) == codes.Unavailable
	})
	clk.Advance(time.Minute)
	var p peer.Peer
	eventually(t, "the reconnection to the new certificate", func() bool {
		return checkHealth(conn, grpc.Peer(&p)) == nil
	})
	if got := p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0]; !got.Equal(leaf2.Cert) {
		t.Fatalf("server presented %x, want the new certificate", got.SerialNumber)
	}
}

// A rotated client certificate is presented from the first reconnection
// after the client's next check.
func TestClient_CertificateRotation(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	clientCert, clientKey := ca.Client(t, "first").Write(t, dir, "client")
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: tlsconf.ClientAuthRequire,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := newTrackingListener(t)
	peers := &peerLog{}
	addr := serveGRPC(t, ln, s, peers)
	clk := newClock()
	c, err := tlsconf.NewClient(tlsconf.ClientOptions{
		CAFile: caFile, CertFile: clientCert, KeyFile: clientKey, CheckInterval: time.Minute, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := dialGRPC(t, addr, c.TransportCredentials(), fastReconnect)
	if err := checkHealth(conn); err != nil {
		t.Fatal(err)
	}
	clientCN := func() string { return peers.last(t).State.PeerCertificates[0].Subject.CommonName }
	if cn := clientCN(); cn != "first" {
		t.Fatalf("client presented %q", cn)
	}

	second := ca.Issue(t, tlstest.Options{CommonName: "second", Client: true, NotAfter: time.Now().Add(48 * time.Hour)})
	second.Write(t, dir, "client")
	ln.cut()
	if err := checkHealthEventually(t, conn); clientCN() != "first" {
		t.Fatalf("client presented %q before its check (%v)", clientCN(), err)
	}
	if c.NotAfter().Equal(second.Cert.NotAfter) {
		t.Fatal("NotAfter moved before the check")
	}
	clk.Advance(time.Minute)
	if !c.NotAfter().Equal(second.Cert.NotAfter) {
		t.Fatalf("NotAfter = %v, want the new certificate's", c.NotAfter())
	}
	ln.cut()
	checkHealthEventually(t, conn)
	if cn := clientCN(); cn != "second" {
		t.Fatalf("client presented %q after rotation", cn)
	}
	if cfg := c.Config(); cfg.Certificates[0].Leaf.Subject.CommonName != "second" {
		t.Fatal("Config has the old certificate")
	}

	// DialContext (go-redis's Dialer) presents it too, verifying the
	// dialled host.
	rawAddr, results := serveHandshakes(t, s.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.DialContext(ctx, "tcp", rawAddr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if h := <-results; h.err != nil || h.state.PeerCertificates[0].Subject.CommonName != "second" {
		t.Fatalf("DialContext: server %v", h.err)
	}
}

func checkHealthEventually(t *testing.T, conn *grpc.ClientConn) error {
	t.Helper()
	var err error
	eventually(t, "a health check", func() bool { err = checkHealth(conn); return err == nil })
	return err
}

// fastReconnect makes a ClientConn retry a lost connection within
// milliseconds, so tests need not wait for grpc's default backoff.
var fastReconnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.6, MaxDelay: 50 * time.Millisecond},
	MinConnectTimeout: 5 * time.Second,
})

// Config returns a copy: changing it changes nothing for later callers.
func TestClient_ConfigIsACopy(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	c, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: ca.WriteCA(t, dir, "ca.crt"), ServerName: "talos", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config()
	if cfg.ServerName != "talos" || cfg.MinVersion != tls.VersionTLS13 || cfg.RootCAs == nil || len(cfg.Certificates) != 0 {
		t.Fatalf("Config = %+v", cfg)
	}
	cfg.ServerName, cfg.InsecureSkipVerify, cfg.RootCAs = "evil", true, nil
	if again := c.Config(); again.ServerName != "talos" || again.InsecureSkipVerify || again.RootCAs == nil {
		t.Fatal("a caller's change leaked into the next Config")
	}
	system, err := tlsconf.NewClient(tlsconf.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := system.Config(); cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("without a CA file: RootCAs %v (want the system pool), min %#x", cfg.RootCAs, cfg.MinVersion)
	}
}

// ServerName decides the name the server certificate must carry, over
// gRPC too; OverrideServerName on a clone changes only the clone.
func TestClient_ServerName(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "talos.internal").Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveGRPC(t, newTrackingListener(t), s, &peerLog{})
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"", true}, {"talos.internal", true}, {"other.internal", false}} {
		c, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: caFile, ServerName: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		creds := c.TransportCredentials()
		if info := creds.Info(); info.SecurityProtocol != "tls" || info.ServerName != tc.name {
			t.Fatalf("Info() = %+v", info)
		}
		if err := checkHealth(dialGRPC(t, addr, creds)); (err == nil) != tc.ok {
			t.Errorf("server name %q: health check %v, want success %v", tc.name, err, tc.ok)
		}
	}

	c, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: caFile, ServerName: "talos.internal"})
	if err != nil {
		t.Fatal(err)
	}
	creds := c.TransportCredentials()
	clone := creds.Clone()
	if err := clone.OverrideServerName("other.internal"); err != nil {
		t.Fatal(err)
	}
	if creds.Info().ServerName != "talos.internal" || clone.Info().ServerName != "other.internal" {
		t.Fatalf("override: original %q, clone %q", creds.Info().ServerName, clone.Info().ServerName)
	}
	if err := checkHealth(dialGRPC(t, addr, clone)); status.Code(err) != codes.Unavailable {
		t.Fatalf("overridden name: %v, want UNAVAILABLE", err)
	}
	if _, _, err := creds.ServerHandshake(nil); err == nil {
		t.Fatal("client credentials accepted a connection")
	}
}

// NewClient refuses half a client certificate and unusable files, naming
// the file.
func TestNewClient_Errors(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Client(t, "c").Write(t, dir, "client")
	truncated := filepath.Join(dir, "truncated.crt")
	other := tlstest.NewCA(t, "other")
	if err := os.WriteFile(truncated, append(append([]byte{}, ca.PEM...), other.PEM[:len(other.PEM)/2]...), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name     string
		o        tlsconf.ClientOptions
		mentions string
	}{
		{"cert without key", tlsconf.ClientOptions{CertFile: certFile}, "key_file"},
		{"key without cert", tlsconf.ClientOptions{KeyFile: keyFile}, "cert_file"},
		{"missing CA", tlsconf.ClientOptions{CAFile: missing}, missing},
		{"truncated CA bundle", tlsconf.ClientOptions{CAFile: truncated}, truncated},
		{"key as CA", tlsconf.ClientOptions{CAFile: keyFile}, keyFile},
		{"missing key", tlsconf.ClientOptions{CertFile: certFile, KeyFile: missing}, missing},
		{"TLS 1.0", tlsconf.ClientOptions{MinVersion: tls.VersionTLS10}, "TLS"},
		{"empty CA file", tlsconf.ClientOptions{CAFile: os.DevNull}, os.DevNull},
	} {
		_, err := tlsconf.NewClient(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.mentions) || strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.mentions)
		}
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: "/dev/zero"}); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("endless CA file: %v", err)
		}
	}
}

// A session resumed after the server's client CA file has dropped the CA
// of the client's certificate does not let the client in: crypto/tls
// checks the session's chains against the current pool, which is the
// rotated one.
func TestServer_ResumptionAfterClientCARotation(t *testing.T) {
	ca1, ca2 := tlstest.NewCA(t, "ca1"), tlstest.NewCA(t, "ca2")
	dir := t.TempDir()
	certFile, keyFile := ca1.Server(t).Write(t, dir, "server")
	caFile := filepath.Join(dir, "clients.crt")
	writeFile(t, caFile, ca1.PEM)
	clk := newClock()
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: tlsconf.ClientAuthRequire,
		CheckInterval: time.Minute, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveHandshakes(t, s.Config())
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		writeFile(t, caFile, ca1.PEM)
		clk.Advance(time.Minute)
		cfg := &tls.Config{
			RootCAs: ca1.Pool(), ServerName: "localhost", MaxVersion: version,
			Certificates:       []tls.Certificate{ca1.Client(t, "ops").TLSCertificate(t)},
			ClientSessionCache: tls.NewLRUClientSessionCache(4),
		}
		for i, wantResumed := range []bool{false, true} {
			clientErr, state, h := dial(t, addr, results, cfg)
			if clientErr != nil || h.err != nil || state.DidResume != wantResumed {
				t.Fatalf("version %#x, handshake %d: client %v, server %v, resumed %v", version, i, clientErr, h.err, state.DidResume)
			}
		}
		writeFile(t, caFile, ca2.PEM)
		clk.Advance(time.Minute)
		clientErr, state, h := dial(t, addr, results, cfg)
		if h.err == nil || clientErr == nil || state.DidResume {
			t.Fatalf("version %#x, after the CA rotation: client %v, server %v, resumed %v", version, clientErr, h.err, state.DidResume)
		}
	}
}
