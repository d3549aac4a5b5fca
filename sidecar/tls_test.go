package sidecar_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/talos-project/talos/extauthz"
	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
	"github.com/talos-project/talos/sidecar"
	"github.com/talos-project/talos/sidecar/invalidation"
	"github.com/talos-project/talos/sidecar/pipeline"
	"github.com/talos-project/talos/sidecar/upstream"
)

// controlPlane is a fake control plane over TLS: the Verifier service,
// answering every key as valid, and an invalidation stream that sends one
// heartbeat. It records the token each call carried and counts the
// connections it accepted.
type controlPlane struct {
	sidecarpb.UnimplementedVerifierServer
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr     string
	accepted atomic.Int64
	verifies atomic.Int64
	// tokens receives the authorization metadata of each call and stream.
	tokens chan []string
}

func newControlPlane(t *testing.T, cfg *tls.Config) *controlPlane {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: l.Addr().String(), tokens: make(chan []string, 64)}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	sidecarpb.RegisterVerifierServer(gs, cp)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, cp)
	go func() { _ = gs.Serve(countAccepts{l, &cp.accepted}) }()
	t.Cleanup(gs.Stop)
	return cp
}

type countAccepts struct {
	net.Listener
	n *atomic.Int64
}

func (l countAccepts) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func (cp *controlPlane) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	cp.tokens <- md.Get("authorization")
}

func (cp *controlPlane) Verify(ctx context.Context, r *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
	cp.verifies.Add(1)
	cp.record(ctx)
	return apiconv.SidecarResponse(credential.Result{
		Type: credential.TypeIssued, Tenant: credential.Tenant(r.GetTenant()), KeyID: "k1", ActorID: "svc-orders",
		Scopes: []string{"read"}, Status: credential.StateActive,
	}, nil), nil
}

func (cp *controlPlane) DeltaAggregatedResources(s grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	cp.record(s.Context())
	if _, err := s.Recv(); err != nil {
		return err
	}
	hb, err := anypb.New(&sidecarpb.Invalidation{Seq: 1})
	if err != nil {
		return err
	}
	err = s.Send(&discoveryv3.DeltaDiscoveryResponse{
		TypeUrl: sidecarpb.InvalidationTypeURL, Nonce: "n1",
		Resources: []*discoveryv3.Resource{{Name: sidecarpb.HeartbeatName, Version: "1", Resource: hb}},
	})
	if err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// startSidecar assembles and runs a sidecar the way `talos proxy` does,
// with its upstream on up (the Verifier calls and the invalidation stream
// on one connection) and its listeners serving TLS with listenTLS.
func startSidecar(t *testing.T, up upstream.Options, listenTLS *tls.Config) (*sidecar.Server, *invalidation.Client) {
	t.Helper()
	up.Token = "sidecar-token"
	client, err := upstream.New(up)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	pl, err := pipeline.New(client, pipeline.Options{CheckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pl.Close)
	stream, err := invalidation.New(pl, invalidation.Options{Conn: client.Conn(), MaxStaleness: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.Close() })
	pl.UseStream(stream.Fresh)
	az, err := extauthz.New(pl, extauthz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sidecar.New(t.Context(), sidecar.Config{
		ExtAuthzAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		ExtAuthzTLS: listenTLS, HTTPTLS: listenTLS, MetricsTLS: listenTLS,
	}, sidecar.Deps{ExtAuthz: az, Upstream: client, Stream: stream, Runners: []sidecar.Runner{pl, stream}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar Run: %v", err)
		}
	})
	return srv, stream
}

// check sends Envoy's CheckRequest for a key to the sidecar's ext_authz
// listener over TLS (trusting ca).
func check(t *testing.T, srv *sidecar.Server, ca *tlstest.CA) *authv3.CheckResponse {
	t.Helper()
	cc, err := grpc.NewClient(srv.ExtAuthzAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Headers: map[string]string{
				"x-api-key": "imported-key-0123456789abcdef0123456789abcdef", ":authority": "app",
			},
		}},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// TestSidecar_UpstreamTLS: a sidecar whose upstream trusts the control
// plane's CA (with its client certificate, when the control plane demands
// one) allows a valid key, and reaches the control plane over one
// connection that carries the Verifier calls, the invalidation stream and
// the token.
func TestSidecar_UpstreamTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "control-plane")
	mesh := tlstest.NewCA(t, "mesh")
	for name, mtls := range map[string]bool{"TLS": false, "mTLS": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			server := &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)}}
			client := &tls.Config{RootCAs: ca.Pool()}
			if mtls {
				server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
				client.Certificates = []tls.Certificate{ca.Client(t, "talos-sidecar").TLSCertificate(t)}
			}
			cp := newControlPlane(t, server)
			srv, stream := startSidecar(t, upstream.Options{Addr: cp.addr, TransportCredentials: credentials.NewTLS(client)},
				&tls.Config{Certificates: []tls.Certificate{mesh.Server(t).TLSCertificate(t)}})
			deadline := time.Now().Add(10 * time.Second)
			for !stream.Fresh() {
				if time.Now().After(deadline) {
					t.Fatal("the invalidation stream never synced over TLS")
				}
				time.Sleep(5 * time.Millisecond)
			}
			resp := check(t, srv, mesh)
			if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK || resp.GetOkResponse() == nil {
				t.Fatalf("Check of a valid key = %v (%v), want OK", c, resp.GetDeniedResponse())
			}
			if n := cp.accepted.Load(); n != 1 {
				t.Errorf("the control plane accepted %d connections from the sidecar, want 1", n)
			}
			for range 2 { // the stream and the Verify call
				if got := <-cp.tokens; len(got) != 1 || got[0] != "Bearer sidecar-token" {
					t.Errorf("a call carried authorization %q, want the sidecar's token", got)
				}
			}
			// The sidecar's other TLS listeners.
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: mesh.Pool()}, ForceAttemptHTTP2: true}}
			defer hc.CloseIdleConnections()
			for _, addr := range []net.Addr{srv.HTTPAddr(), srv.MetricsAddr()} {
				r, err := hc.Get("https://" + addr.String() + "/health/alive")
				if err != nil {
					t.Fatalf("health over TLS on %s: %v", addr, err)
				}
				r.Body.Close()
				if r.StatusCode != http.StatusOK || r.ProtoMajor != 2 {
					t.Errorf("health on %s = %d over %s, want 200 over HTTP/2", addr, r.StatusCode, r.Proto)
				}
			}
		})
	}
}

// TestSidecar_UpstreamWrongCA: a sidecar whose upstream trusts another CA
// than the control plane's fails closed: Envoy gets the in-band 503 denial
// (failure_mode deny), never an allow, and nothing reaches the control
// plane's handlers.
func TestSidecar_UpstreamWrongCA(t *testing.T) {
	t.Parallel()
	ca, other := tlstest.NewCA(t, "control-plane"), tlstest.NewCA(t, "other")
	cp := newControlPlane(t, &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)}})
	srv, stream := startSidecar(t, upstream.Options{
		Addr: cp.addr, TransportCredentials: credentials.NewTLS(&tls.Config{RootCAs: other.Pool()}), Timeout: time.Second,
	}, &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLSCertificate(t)}})
	for range 2 { // an outage is not cached: twice the same answer
		resp := check(t, srv, ca)
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.Unavailable || resp.GetOkResponse() != nil {
			t.Fatalf("Check with the wrong upstream CA = %v, want the UNAVAILABLE denial", c)
		}
		if st := resp.GetDeniedResponse().GetStatus().GetCode(); st != typev3.StatusCode_ServiceUnavailable {
			t.Errorf("denial HTTP status = %v, want 503", st)
		}
	}
	if n := cp.verifies.Load(); n != 0 {
		t.Errorf("%d Verify calls reached the control plane", n)
	}
	if stream.Fresh() {
		t.Error("the invalidation stream is fresh without a verified control plane")
	}
}
