package tlsconf_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/talos-project/talos/pkg/tlsconf"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// serveHTTPS runs an http.Server with ServeTLS on a fresh port; the handler
// answers with the request's protocol.
func serveHTTPS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto)
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	return "https://" + ln.Addr().String() + "/"
}

// get fetches url and returns the body and the negotiated protocol.
func get(t *testing.T, client *http.Client, url string) (body, alpn string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.TLS.NegotiatedProtocol
}

// http.Server.ServeTLS, given Config("h2", "http/1.1"), speaks HTTP/2 to a
// client offering h2 and HTTP/1.1 to one offering only http/1.1: the
// protocols survive the configuration GetConfigForClient substitutes.
func TestServer_ConfigHTTP(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t).Write(t, t.TempDir(), "server")
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	url := serveHTTPS(t, s.Config("h2", "http/1.1"))

	h2 := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true,
	}}
	if body, alpn := get(t, h2, url); body != "HTTP/2.0" || alpn != "h2" {
		t.Errorf("h2 client: served %q over ALPN %q, want HTTP/2.0 over h2", body, alpn)
	}
	h1 := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	if body, alpn := get(t, h1, url); body != "HTTP/1.1" || alpn != "http/1.1" {
		t.Errorf("http/1.1 client: served %q over ALPN %q, want HTTP/1.1 over http/1.1", body, alpn)
	}
}

// A gRPC server on credentials.NewTLS(s.Config("h2")) with mutual TLS
// serves a health check to a client on NewClient's TransportCredentials;
// both ends get credentials.TLSInfo, the server with the client's verified
// chain and SPIFFE ID.
func TestServer_ConfigGRPC(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	const spiffe = "spiffe://cluster.local/ns/talos/sa/sidecar"
	clientCert, clientKey := ca.Client(t, "sidecar", spiffe).Write(t, dir, "client")

	s, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: tlsconf.ClientAuthRequire,
	})
	if err != nil {
		t.Fatal(err)
	}
	srvPeers := &peerLog{}
	addr := serveGRPC(t, newTrackingListener(t), s, srvPeers)

	c, err := tlsconf.NewClient(tlsconf.ClientOptions{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey})
	if err != nil {
		t.Fatal(err)
	}
	conn := dialGRPC(t, addr, c.TransportCredentials())
	var p peer.Peer
	if err := checkHealth(conn, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		t.Fatalf("client AuthInfo is %T, want credentials.TLSInfo", p.AuthInfo)
	}
	if info.State.NegotiatedProtocol != "h2" || info.SecurityLevel != credentials.PrivacyAndIntegrity {
		t.Errorf("client: ALPN %q, security level %v", info.State.NegotiatedProtocol, info.SecurityLevel)
	}
	srvInfo := srvPeers.last(t)
	if len(srvInfo.State.VerifiedChains) == 0 || srvInfo.SPIFFEID == nil || srvInfo.SPIFFEID.String() != spiffe {
		t.Errorf("server: %d verified chains, SPIFFE ID %v", len(srvInfo.State.VerifiedChains), srvInfo.SPIFFEID)
	}
}

// peerLog records the TLS peers of a gRPC server's calls.
type peerLog struct {
	mu    sync.Mutex
	infos []credentials.TLSInfo
}

func (l *peerLog) interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			l.mu.Lock()
			l.infos = append(l.infos, info)
			l.mu.Unlock()
		}
	}
	return h(ctx, req)
}

func (l *peerLog) last(t *testing.T) credentials.TLSInfo {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.infos) == 0 {
		t.Fatal("the server saw no TLS peer")
	}
	return l.infos[len(l.infos)-1]
}

// serveGRPC serves the health service on ln with s's TLS.
func serveGRPC(t *testing.T, ln net.Listener, s *tlsconf.Server, peers *peerLog) string {
	t.Helper()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(s.Config("h2"))), grpc.UnaryInterceptor(peers.interceptor))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func dialGRPC(t *testing.T, addr string, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(creds))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// checkHealth makes one health check, failing fast when no connection can
// be made.
func checkHealth(conn *grpc.ClientConn, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return errors.New("status " + strings.ToLower(resp.Status.String()))
	}
	return nil
}
