package upstream_test

import (
	"context"
	"crypto/tls"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
	"github.com/talos-project/talos/sidecar/upstream"
)

// transports are the links a benchmark compares: a control plane on a real
// loopback socket, reached in plaintext or over mTLS (TLS 1.3, ECDSA P-256
// certificates, a client certificate required).
func transports(b *testing.B) []struct {
	name   string
	addr   string
	client credentials.TransportCredentials
} {
	b.Helper()
	ca := tlstest.NewCA(b, "control-plane")
	resp := apiconv.SidecarResponse(keyResult(), nil)
	fv := &fakeVerifier{verify: func(context.Context, *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) { return resp, nil }}
	plain := newTestServer(b, fv, nil)
	mtls := newTestServer(b, fv, nil, grpc.Creds(credentials.NewTLS(serverTLS(b, ca, ca))))
	return []struct {
		name   string
		addr   string
		client credentials.TransportCredentials
	}{
		{"plaintext", plain.addr, nil},
		{"mTLS", mtls.addr, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Client(b, "talos-sidecar").TLSCertificate(b)}})},
	}
}

var benchKey = credential.Presented{Credential: credPrefix + "bench", Tenant: tenant}

// BenchmarkVerify is one Verify on an established connection: what a cache
// miss costs on the wire, plaintext against mTLS. Run with -count to
// interleave the two.
func BenchmarkVerify(b *testing.B) {
	for _, tr := range transports(b) {
		b.Run(tr.name, func(b *testing.B) {
			c, err := upstream.New(upstream.Options{Addr: tr.addr, Token: "sidecar-token", TransportCredentials: tr.client})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			if _, err := c.Verify(ctx, benchKey); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Verify(ctx, benchKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake is a new connection and its first Verify: what a
// sidecar pays at start and on every reconnection, plaintext against mTLS
// (a full handshake each time; grpc-go does not resume TLS sessions by
// default).
func BenchmarkHandshake(b *testing.B) {
	for _, tr := range transports(b) {
		b.Run(tr.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				c, err := upstream.New(upstream.Options{Addr: tr.addr, Token: "sidecar-token", TransportCredentials: tr.client})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Verify(ctx, benchKey); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
}
