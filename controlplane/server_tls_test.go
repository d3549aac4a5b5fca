package controlplane_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/talos-project/talos/controlplane"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// TestServer_TLS: with TLS configurations, every listener of the control
// plane serves TLS (the HTTP ones HTTP/2), and plaintext gets nothing.
func TestServer_TLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "control-plane")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)}}
	srv, err := controlplane.New(t.Context(), controlplane.Config{
		HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		HTTPTLS: cfg, GRPCTLS: cfg, MetricsTLS: cfg,
	}, deps(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	plain := &http.Client{Timeout: 5 * time.Second}
	for _, addr := range []net.Addr{srv.HTTPAddr(), srv.MetricsAddr()} {
		r, err := hc.Get("https://" + addr.String() + "/health/alive")
		if err != nil {
			t.Fatalf("health over TLS on %s: %v", addr, err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK || r.ProtoMajor != 2 {
			t.Errorf("health on %s = %d over %s, want 200 over HTTP/2", addr, r.StatusCode, r.Proto)
		}
		if r, err := plain.Get("http://" + addr.String() + "/health/alive"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				t.Errorf("plaintext health on the TLS listener %s answered 200", addr)
			}
		}
	}

	health := func(creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := health(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})); err != nil {
		t.Errorf("gRPC health over TLS: %v", err)
	}
	if err := health(insecure.NewCredentials()); err == nil {
		t.Error("plaintext gRPC on the TLS listener succeeded")
	}
}
