package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// pki is a throwaway certificate authority of one scenario, made at run
// time (ECDSA P-256, valid for a day), and the PEM files of the
// certificates it issued, in a directory the scenario's fleet removes.
// (pkg/tlsconf/tlstest does the same for tests but takes a testing.TB.)
type pki struct {
	dir    string
	caFile string
	pool   *x509.CertPool
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
}

// leaf is an issued certificate: its files, and the pair for Go clients.
type leaf struct {
	certFile, keyFile string
	pair              tls.Certificate
}

func newPKI(fl *fleet) (*pki, error) {
	dir, err := os.MkdirTemp("", "talos-bench-pki-")
	if err != nil {
		return nil, err
	}
	fl.add(func() error { return os.RemoveAll(dir) })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := certTemplate("talos-bench CA")
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caFile: filepath.Join(dir, "ca.crt"), pool: x509.NewCertPool(), cert: cert, key: key}
	p.pool.AddCert(cert)
	return p, os.WriteFile(p.caFile, pemBlock("CERTIFICATE", der), 0o600)
}

func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"Talos bench"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// serverLeaf issues a server certificate for loopback (localhost,
// 127.0.0.1, ::1), named name in the files.
func (p *pki) serverLeaf(name string) (leaf, error) {
	t := certTemplate(name)
	t.DNSNames, t.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return p.issue(name, t)
}

// clientLeaf issues a client certificate whose identity is the URI SAN uri
// (a SPIFFE ID).
func (p *pki) clientLeaf(name, uri string) (leaf, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return leaf{}, err
	}
	t := certTemplate(name)
	t.URIs = []*url.URL{u}
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return p.issue(name, t)
}

func (p *pki) issue(name string, t *x509.Certificate) (leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return leaf{}, err
	}
	t.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, t, p.cert, &key.PublicKey, p.key)
	if err != nil {
		return leaf{}, fmt.Errorf("pki: %s: %w", name, err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return leaf{}, err
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kd)
	l := leaf{certFile: filepath.Join(p.dir, name+".crt"), keyFile: filepath.Join(p.dir, name+".key")}
	if err := errors.Join(os.WriteFile(l.certFile, certPEM, 0o600), os.WriteFile(l.keyFile, keyPEM, 0o600)); err != nil {
		return leaf{}, err
	}
	l.pair, err = tls.X509KeyPair(certPEM, keyPEM)
	return l, err
}

// clientConfig trusts only this CA and presents client when it is not nil.
func (p *pki) clientConfig(client *leaf) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if client != nil {
		c.Certificates = []tls.Certificate{client.pair}
	}
	return c
}

// probeTLS checks that addr serves server's certificate to a client that
// trusts only this CA and presents client, and, with requireClient, that
// the handshake fails for a client that presents none: proof that what is
// measured is the TLS (and mTLS) it claims to be.
func (p *pki) probeTLS(addr string, server, client leaf, requireClient bool) error {
	dial := func(cfg *tls.Config) (*tls.Conn, error) {
		cfg.ServerName = "127.0.0.1"
		cfg.NextProtos = []string{"h2", "http/1.1"}
		d := &net.Dialer{Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", addr, cfg)
	}
	c, err := dial(p.clientConfig(&client))
	if err != nil {
		return fmt.Errorf("TLS probe of %s with a client certificate: %w", addr, err)
	}
	peer := c.ConnectionState().PeerCertificates
	c.Close()
	if len(peer) == 0 || !bytes.Equal(peer[0].Raw, server.pair.Certificate[0]) {
		return fmt.Errorf("TLS probe of %s: the server did not present the certificate it was given", addr)
	}
	if !requireClient {
		return nil
	}
	c, err = dial(p.clientConfig(nil))
	if err != nil {
		return nil // TLS 1.2 fails in the handshake itself
	}
	defer c.Close()
	// In TLS 1.3 the server checks the client's certificate after the
	// client's handshake has returned: its refusal arrives as an alert on
	// the first read.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := errors.AsType[net.Error](err); err == nil || ok && ne.Timeout() {
		return fmt.Errorf("TLS probe of %s: a client without a certificate was not refused (client_auth require is not in force)", addr)
	}
	return nil
}
