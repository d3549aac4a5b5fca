package serve_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/talos-project/talos/pkg/serve"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// reloadingTLS is a server configuration in the shape of a reloading one:
// no Certificates, no NextProtos, everything in what GetConfigForClient
// returns.
func reloadingTLS(t *testing.T, ca *tlstest.CA) *tls.Config {
	t.Helper()
	inner := &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)}, MinVersion: tls.VersionTLS12}
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
}

// startHTTPS is startHTTP serving TLS with cfg, the way Run does.
func startHTTPS(t *testing.T, maxConns int, h http.Handler, cfg *tls.Config, to serve.HTTPTimeouts) (*serve.Listener, *connStates) {
	t.Helper()
	ln, err := serve.Listen(context.Background(), "127.0.0.1:0", maxConns)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve.HTTPServer(h, ln, to, cfg)
	srv.ErrorLog = discardLog
	states := &connStates{m: map[string]http.ConnState{}}
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		hook(c, s)
		states.set(c.RemoteAddr().String(), s)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln, states
}

// discardLog silences net/http's TLS handshake error lines.
var discardLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)

// TestRun_TLS: Run serves TLS on an HTTP server built with a TLS config
// (HTTP/2 negotiated by ALPN even though the certificate and the protocols
// come from GetConfigForClient) and on a gRPC server built with
// GRPCOptions' credentials; plaintext clients get nothing from either.
func TestRun_TLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	httpLn, err := serve.Listen(t.Context(), "127.0.0.1:0", 16)
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := serve.Listen(t.Context(), "127.0.0.1:0", 16)
	if err != nil {
		t.Fatal(err)
	}
	hs := serve.HTTPServer(okHandler, httpLn, serve.HTTPTimeouts{}, reloadingTLS(t, ca))
	hs.ErrorLog = discardLog
	gs := grpc.NewServer(serve.GRPCOptions(serve.Limits{}, reloadingTLS(t, ca))...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(ctx, serve.Group{
			HTTP:     []serve.HTTP{{Name: "HTTP", Server: hs, Listener: httpLn}},
			GRPC:     serve.GRPC{Name: "gRPC", Server: gs, Listener: grpcLn, TLS: true},
			Shutdown: serve.Shutdown{Timeout: 5 * time.Second}, Logger: slog.New(slog.DiscardHandler),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + httpLn.Addr().String() + "/")
	if err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("HTTPS answer %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if err := get(httpLn.Addr().String()); err == nil {
		t.Error("a plaintext request to the TLS listener was answered 200")
	}

	check := healthClient(t, grpcLn.Addr().String(), credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}))
	if err := check(); err != nil {
		t.Errorf("gRPC over TLS: %v", err)
	}
	if err := healthClient(t, grpcLn.Addr().String(), insecure.NewCredentials())(); err == nil {
		t.Error("a plaintext gRPC call to the TLS listener succeeded")
	}
}

// healthClient returns a health check on a new connection to addr with
// creds, closed when the test ends.
func healthClient(t *testing.T, addr string, creds credentials.TransportCredentials) func() error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
}

// TestHTTPServer_MTLS: a server configuration that requires client
// certificates is honoured: no certificate, or one from another CA, is
// refused; the CA's client certificate is served.
func TestHTTPServer_MTLS(t *testing.T) {
	t.Parallel()
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	cfg := &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	}
	ln, _ := startHTTPS(t, 16, okHandler, cfg, serve.HTTPTimeouts{})
	try := func(certs ...tls.Certificate) error {
		return getURL(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}, DisableKeepAlives: true},
			"https://"+ln.Addr().String()+"/")
	}
	if err := try(); err == nil {
		t.Error("served without a client certificate")
	}
	if err := try(other.Client(t, "intruder").TLSCertificate(t)); err == nil {
		t.Error("served a client certificate of another CA")
	}
	if err := try(ca.Client(t, "ops").TLSCertificate(t)); err != nil {
		t.Errorf("client certificate of the CA: %v", err)
	}
}

// idleTLSConn opens a TLS connection, makes one keep-alive HTTP/1.1 request
// on it and leaves it idle, returning once the server counts it idle.
func idleTLSConn(t *testing.T, addr string, ca *tlstest.CA, states *connStates) net.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return leaveIdle(t, c, states)
}

func getTLS(addr string, ca *tlstest.CA) error {
	return getURL(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}, "https://"+addr+"/")
}

// TestListener_TLSIdleConnectionsGiveWay: on a TLS listener, idle
// keep-alive connections and connections that never start their handshake
// give way to new ones, as plaintext ones do.
func TestListener_TLSIdleConnectionsGiveWay(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	ln, states := startHTTPS(t, 2, okHandler, reloadingTLS(t, ca), serve.HTTPTimeouts{})
	addr := ln.Addr().String()
	idle := []net.Conn{idleTLSConn(t, addr, ca, states), idleTLSConn(t, addr, ca, states)}
	if err := getTLS(addr, ca); err != nil {
		t.Fatalf("request with every slot held by an idle TLS connection: %v", err)
	}
	waitClosed(t, idle[0])

	// Connections that never send a ClientHello are idle too.
	waitOpen(t, ln, 1)
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	waitClosed(t, idle[1])
	if err := getTLS(addr, ca); err != nil {
		t.Fatalf("request with every slot held by silent connections: %v", err)
	}
	waitClosed(t, silent[0])
	if s := ln.Stats(); s.Open > 2 || s.Evicted != 3 || s.Refused != 0 {
		t.Errorf("stats = %+v, want open ≤ 2, 3 evicted, none refused", s)
	}
}

// TestListener_TLSBusyConnectionsRefuseNewOnes: a TLS connection serving a
// request keeps its slot; the connection cap holds.
func TestListener_TLSBusyConnectionsRefuseNewOnes(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	ln, _ := startHTTPS(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}), reloadingTLS(t, ca), serve.HTTPTimeouts{})
	addr := ln.Addr().String()
	slow := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + addr + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		slow <- err
	}()
	<-started
	if err := getTLS(addr, ca); err == nil {
		t.Fatal("a connection over the cap was served while the only slot was busy")
	}
	if s := ln.Stats(); s.Refused == 0 || s.Evicted != 0 {
		t.Errorf("stats = %+v, want refusals and no eviction", s)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("slow request: %v", err)
	}
}

// TestHTTPServer_TLSHandshakeTimeout: a peer that opens a connection and
// never sends its ClientHello, or stops in the middle of it, is closed by
// the header timeout, and its slot comes back.
func TestHTTPServer_TLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	ln, _ := startHTTPS(t, 4, okHandler, reloadingTLS(t, ca), serve.HTTPTimeouts{Read: 200 * time.Millisecond})
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	stalled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// A TLS handshake record header announcing 512 bytes, then nothing.
	if _, err := stalled.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
		t.Fatal(err)
	}
	waitClosedOrReset(t, silent)
	waitClosedOrReset(t, stalled)
	waitOpen(t, ln, 0)
}

// waitClosedOrReset waits until the server closes c, with or without a
// reset.
func waitClosedOrReset(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatal("the server kept a connection that never finished its TLS handshake")
	}
}

// startGRPCTLS serves the health service over TLS on a listener capped at
// maxConns, with extra options after GRPCOptions'.
func startGRPCTLS(t *testing.T, maxConns int, cfg *tls.Config, extra ...grpc.ServerOption) *serve.Listener {
	t.Helper()
	ln, err := serve.Listen(context.Background(), "127.0.0.1:0", maxConns)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(serve.GRPCOptions(serve.Limits{}, cfg), extra...)...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln
}

// TestGRPC_TLSHandshakeTimeout: the gRPC connection timeout covers the TLS
// handshake, so a silent peer does not hold its slot.
func TestGRPC_TLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	ln := startGRPCTLS(t, 4, reloadingTLS(t, ca), grpc.ConnectionTimeout(200*time.Millisecond))
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitClosedOrReset(t, silent)
	waitOpen(t, ln, 0)
}

// TestGRPC_TLSConnectionCap: a TLS gRPC listener refuses connections over
// its cap (a gRPC connection is never idle to the listener) and serves the
// ones under it.
func TestGRPC_TLSConnectionCap(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "ca")
	ln := startGRPCTLS(t, 1, reloadingTLS(t, ca))
	check := healthClient(t, ln.Addr().String(), credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}))
	if err := check(); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	extra, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
	if err == nil {
		defer extra.Close()
		_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = extra.Read(make([]byte, 1))
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("a connection over the cap got %v, want it closed", err)
	}
	if s := ln.Stats(); s.Refused == 0 || s.Open != 1 {
		t.Errorf("stats = %+v, want refusals and 1 open", s)
	}
	if err := check(); err != nil {
		t.Errorf("the connection under the cap after a refusal: %v", err)
	}
}
