package tlsconf_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/tlsconf"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// Each client authentication mode treats each kind of client as crypto/tls
// does with the same settings in a static configuration, and fills
// VerifiedChains for a good client certificate.
func TestServer_ClientAuth(t *testing.T) {
	ca, wrong := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "wrong")
	dir := t.TempDir()
	serverLeaf := ca.Server(t)
	certFile, keyFile := serverLeaf.Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca.crt")

	clients := []struct {
		name string
		leaf *tlstest.Leaf
	}{
		{"no certificate", nil},
		{"certificate from the CA", ca.Client(t, "ops", "spiffe://cluster.local/ns/ops/sa/admin")},
		{"certificate from another CA", wrong.Client(t, "ops")},
		{"expired certificate", ca.Issue(t, tlstest.Options{
			CommonName: "ops", Client: true,
			NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		})},
	}
	modes := []struct {
		auth   tlsconf.ClientAuth
		static tls.ClientAuthType
		want   []bool // handshake succeeds, per client
	}{
		{"", tls.NoClientCert, []bool{true, true, true, true}},
		{tlsconf.ClientAuthNone, tls.NoClientCert, []bool{true, true, true, true}},
		{tlsconf.ClientAuthRequest, tls.VerifyClientCertIfGiven, []bool{true, true, false, false}},
		{tlsconf.ClientAuthRequire, tls.RequireAndVerifyClientCert, []bool{false, true, false, false}},
	}
	for _, m := range modes {
		s, err := tlsconf.NewServer(tlsconf.ServerOptions{
			CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: m.auth,
		})
		if err != nil {
			t.Fatal(err)
		}
		addr, results := serveHandshakes(t, s.Config())
		staticAddr, staticResults := serveHandshakes(t, &tls.Config{
			Certificates: []tls.Certificate{serverLeaf.TLSCertificate(t)},
			ClientAuth:   m.static, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
		})
		for i, c := range clients {
			t.Run(string(m.auth)+"/"+c.name, func(t *testing.T) {
				cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
				if c.leaf != nil {
					// Sent whatever CAs the server names, as an attacker
					// would (tls.Config.Certificates would hold back a
					// certificate the server's CA list does not cover).
					cert := c.leaf.TLSCertificate(t)
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
						return &cert, nil
					}
				}
				clientErr, _, h := dial(t, addr, results, cfg)
				_, _, staticH := dial(t, staticAddr, staticResults, cfg)
				if got := h.err == nil; got != m.want[i] || got != (staticH.err == nil) {
					t.Fatalf("server handshake error %v (client %v), crypto/tls alone %v; want success %v",
						h.err, clientErr, staticH.err, m.want[i])
				}
				if !m.want[i] {
					if clientErr == nil {
						t.Fatal("client saw no failure")
					}
					return
				}
				if clientErr != nil {
					t.Fatalf("client: %v", clientErr)
				}
				peers := h.state.PeerCertificates
				switch {
				case m.static == tls.NoClientCert || c.leaf == nil:
					if len(peers) != 0 || len(h.state.VerifiedChains) != 0 {
						t.Fatalf("server got %d certificates, %d chains; want none", len(peers), len(h.state.VerifiedChains))
					}
				default:
					chains := h.state.VerifiedChains
					if len(chains) == 0 {
						t.Fatal("no verified chain for a good client certificate")
					}
					chain := chains[0]
					if !chain[0].Equal(c.leaf.Cert) || !chain[len(chain)-1].Equal(ca.Cert) {
						t.Fatalf("verified chain %v does not run from the client to the CA", chain)
					}
				}
			})
		}
	}
}

// With MinVersion TLS 1.3, a client that stops at TLS 1.2 is refused.
func TestServer_MinVersion(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t).Write(t, t.TempDir(), "server")
	for _, tc := range []struct {
		min        uint16
		clientMax  uint16
		wantOK     bool
		wantVesion uint16
	}{
		{0, tls.VersionTLS12, true, tls.VersionTLS12},
		{tls.VersionTLS13, tls.VersionTLS12, false, 0},
		{tls.VersionTLS13, 0, true, tls.VersionTLS13},
		{0, tls.VersionTLS11, false, 0},
	} {
		s, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, MinVersion: tc.min})
		if err != nil {
			t.Fatal(err)
		}
		addr, results := serveHandshakes(t, s.Config())
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tc.clientMax}
		clientErr, state, h := dial(t, addr, results, cfg)
		if (h.err == nil) != tc.wantOK || (clientErr == nil) != tc.wantOK {
			t.Errorf("min %#x, client max %#x: server %v, client %v; want success %v", tc.min, tc.clientMax, h.err, clientErr, tc.wantOK)
			continue
		}
		if tc.wantOK && state.Version != tc.wantVesion {
			t.Errorf("min %#x, client max %#x: version %#x, want %#x", tc.min, tc.clientMax, state.Version, tc.wantVesion)
		}
	}
}

func TestParseMinVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint16
		ok   bool
	}{
		{"", tls.VersionTLS12, true},
		{"1.2", tls.VersionTLS12, true},
		{"1.3", tls.VersionTLS13, true},
		{"1.1", 0, false},
		{"1.0", 0, false},
		{"TLS1.2", 0, false},
		{"1.4", 0, false},
		{" 1.2", 0, false},
		{"12", 0, false},
	} {
		got, err := tlsconf.ParseMinVersion(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMinVersion(%q) = %#x, %v; want %#x, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// NewServer refuses incomplete or unusable settings, naming the file at
// fault and never quoting it.
func TestNewServer_Errors(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	leaf := ca.Server(t)
	certFile, keyFile := leaf.Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	other := ca.Server(t)
	_, otherKey := other.Write(t, dir, "other")
	const secret = "NOT-A-KEY-BUT-SECRET-STUFF"
	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	for _, tc := range []struct {
		name     string
		o        tlsconf.ServerOptions
		mentions string
	}{
		{"no cert file", tlsconf.ServerOptions{KeyFile: keyFile}, "cert_file"},
		{"no key file", tlsconf.ServerOptions{CertFile: certFile}, "key_file"},
		{"missing cert file", tlsconf.ServerOptions{CertFile: missing, KeyFile: keyFile}, missing},
		{"missing key file", tlsconf.ServerOptions{CertFile: certFile, KeyFile: missing}, missing},
		{"garbage key", tlsconf.ServerOptions{CertFile: certFile, KeyFile: garbage}, garbage},
		{"key of another certificate", tlsconf.ServerOptions{CertFile: certFile, KeyFile: otherKey}, otherKey},
		{"key as certificate", tlsconf.ServerOptions{CertFile: keyFile, KeyFile: keyFile}, keyFile},
		{"request without CA", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientAuth: tlsconf.ClientAuthRequest}, "client_ca_file"},
		{"require without CA", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientAuth: tlsconf.ClientAuthRequire}, "client_ca_file"},
		{"missing CA", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientAuth: tlsconf.ClientAuthRequire, ClientCAFile: missing}, missing},
		{"garbage CA", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientAuth: tlsconf.ClientAuthRequire, ClientCAFile: garbage}, garbage},
		{"key as CA", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientAuth: tlsconf.ClientAuthRequire, ClientCAFile: keyFile}, keyFile},
		{"unknown client auth", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: "optional"}, "optional"},
		{"TLS 1.1", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, MinVersion: tls.VersionTLS11}, "TLS"},
		{"negative interval", tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, CheckInterval: -time.Second}, "interval"},
	} {
		s, err := tlsconf.NewServer(tc.o)
		if err == nil {
			t.Errorf("%s: NewServer succeeded", tc.name)
			continue
		}
		if s != nil {
			t.Errorf("%s: a Server with the error", tc.name)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.mentions) || strings.Contains(msg, secret) || strings.Contains(msg, "BEGIN") {
			t.Errorf("%s: error %q should name %q and quote no file", tc.name, msg, tc.mentions)
		}
	}
	if _, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: missing, KeyFile: keyFile}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v does not wrap os.ErrNotExist", err)
	}
}

// An expired certificate is loaded (peers reject it; the listener stays
// up), with a warning.
func TestNewServer_ExpiredCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	leaf := ca.Issue(t, tlstest.Options{
		CommonName: "localhost", DNS: []string{"localhost"}, Server: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
	})
	certFile, keyFile := leaf.Write(t, t.TempDir(), "server")
	log, logs := newTestLogger(t)
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile, Logger: log})
	if err != nil {
		t.Fatalf("expired certificate refused: %v", err)
	}
	if !s.NotAfter().Equal(leaf.Cert.NotAfter) {
		t.Fatalf("NotAfter = %v, want %v", s.NotAfter(), leaf.Cert.NotAfter)
	}
	if logs.count("level=WARN") != 1 || logs.count("expired") != 1 {
		t.Fatalf("want one warning about expiry, log:\n%s", logs)
	}
	addr, results := serveHandshakes(t, s.Config())
	if clientErr, _, _ := dial(t, addr, results, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}); clientErr == nil {
		t.Fatal("a client accepted an expired certificate")
	}
}

// A client CA file is not read when no client certificate is asked for,
// and the setting is called out.
func TestNewServer_ClientCAIgnoredWithoutClientAuth(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	log, logs := newTestLogger(t)
	if _, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: certFile, KeyFile: keyFile, ClientCAFile: filepath.Join(dir, "missing.crt"), Logger: log,
	}); err != nil {
		t.Fatal(err)
	}
	if logs.count("client_ca_file is ignored") != 1 {
		t.Fatalf("no warning, log:\n%s", logs)
	}
}
