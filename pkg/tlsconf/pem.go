package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// parseCertificates parses the CERTIFICATE blocks of a PEM file. Unlike
// [x509.CertPool.AppendCertsFromPEM] it skips nothing silently: a block
// that does not parse, a truncated block (a file caught half-written) or a
// file without certificates is an error, so a half-written bundle is never
// taken for a complete one. Other block types are an error when onlyCerts
// is set (a CA bundle) and skipped otherwise (a certificate file that also
// holds its key). Errors never quote the file.
func parseCertificates(data []byte, onlyCerts bool) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			if onlyCerts {
				return nil, fmt.Errorf("PEM block %d is not a CERTIFICATE", n)
			}
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, errors.New("truncated PEM block")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// loadPool parses a CA bundle into a pool.
func loadPool(file string, data []byte) (*x509.CertPool, error) {
	certs, err := parseCertificates(data, true)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA file %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// loadKeyPair parses a certificate chain and its private key (PKCS #8,
// PKCS #1 or SEC 1 EC) and checks that they match.
func loadKeyPair(certFile, keyFile string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if _, err := parseCertificates(certPEM, false); err != nil {
		return nil, fmt.Errorf("tlsconf: certificate file %s: %w", certFile, err)
	}
	// X509KeyPair's errors describe, never quote, its inputs.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate file %s with key file %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsconf: certificate file %s: %w", certFile, err)
		}
	}
	return &pair, nil
}

// logCertificate logs a loaded certificate's public facts, with a warning
// when it is not valid now.
func logCertificate(log *slog.Logger, msg string, leaf *x509.Certificate, now time.Time) {
	attrs := []any{
		slog.String("serial", hex.EncodeToString(leaf.SerialNumber.Bytes())),
		slog.String("subject", leaf.Subject.String()),
		slog.Time("not_after", leaf.NotAfter),
	}
	switch {
	case now.After(leaf.NotAfter):
		log.Warn(msg+"; it has expired", attrs...)
	case now.Before(leaf.NotBefore):
		log.Warn(msg+"; it is not valid yet", append(attrs, slog.Time("not_before", leaf.NotBefore))...)
	default:
		log.Info(msg, attrs...)
	}
}
