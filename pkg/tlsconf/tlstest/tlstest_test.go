package tlstest_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// A client certificate verifies against its CA and not against another.
func TestIssuedCertificatesVerify(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	srv := ca.Server(t)
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	cl := ca.Client(t, "ops", "spiffe://cluster.local/ns/ops/sa/admin")
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := cl.Cert.Verify(opts); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	opts.Roots = other.Pool()
	if _, err := cl.Cert.Verify(opts); err == nil {
		t.Fatal("client certificate verified against a foreign CA")
	}
	if got := cl.Cert.URIs[0].String(); got != "spiffe://cluster.local/ns/ops/sa/admin" {
		t.Fatalf("URI SAN = %q", got)
	}
	dir := t.TempDir()
	certFile, keyFile := cl.Write(t, dir, "client")
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("written pair: %v", err)
	}
}
