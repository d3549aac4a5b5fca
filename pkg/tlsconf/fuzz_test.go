package tlsconf

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// parseCertificates takes any bytes without panicking; what it accepts is
// a non-empty list of certificates that crypto/x509 accepts too, and it
// accepts no cut-off bundle.
func FuzzParseCertificates(f *testing.F) {
	ca, other := tlstest.NewCA(f, "ca"), tlstest.NewCA(f, "other")
	leaf := ca.Server(f)
	bundle := append(append([]byte{}, ca.PEM...), other.PEM...)
	f.Add(ca.PEM)
	f.Add(bundle)
	f.Add(bundle[:len(bundle)-40])
	f.Add(append(append([]byte("subject=CN = ca\n"), ca.PEM...), "\n\n"...))
	f.Add(append(append([]byte{}, leaf.CertPEM...), leaf.KeyPEM...))
	f.Add(leaf.KeyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, onlyCerts := range []bool{true, false} {
			certs, err := parseCertificates(data, onlyCerts)
			if err != nil {
				if certs != nil {
					t.Fatal("certificates with an error")
				}
				continue
			}
			if len(certs) == 0 {
				t.Fatal("no certificates and no error")
			}
			if !x509.NewCertPool().AppendCertsFromPEM(data) {
				t.Fatal("accepted what crypto/x509 rejects")
			}
			if bytes.Equal(data, bundle[:len(bundle)-40]) {
				t.Fatal("accepted a cut-off bundle")
			}
		}
	})
}
