package main

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// reflectServices lists the services of the gRPC server at addr through the
// reflection v1 API, as grpcurl does, and checks that the file of each
// service in resolve is served (grpcurl needs it to call the service).
func reflectServices(t *testing.T, addr string, resolve ...string) ([]string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		return nil, err
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) (*reflectionpb.ServerReflectionResponse, error) {
		if err := stream.Send(req); err != nil {
			return nil, err
		}
		return stream.Recv()
	}
	resp, err := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, sym := range resolve {
		resp, err := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym}})
		if err != nil {
			return nil, err
		}
		files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
		found := false
		for _, b := range files {
			var fd descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(b, &fd); err != nil {
				t.Fatalf("descriptor of %s: %v", sym, err)
			}
			for _, s := range fd.GetService() {
				found = found || fd.GetPackage()+"."+s.GetName() == sym
			}
		}
		if !found {
			t.Errorf("%s: reflection gave %d files, none declaring the service (%v)", addr, len(files), resp.GetErrorResponse())
		}
	}
	return names, nil
}

// withProxyEnv is the environment of `serve --with-proxy` on loopback and
// free ports, plus extra.
func withProxyEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	return append(append(serverEnv(t.TempDir(), "0"),
		"TALOS_PROXY_EXTAUTHZ_HOST=127.0.0.1", "TALOS_PROXY_EXTAUTHZ_PORT=0",
		"TALOS_PROXY_HTTP_HOST=127.0.0.1", "TALOS_PROXY_HTTP_PORT=0",
		"TALOS_PROXY_METRICS_HOST=127.0.0.1", "TALOS_PROXY_METRICS_PORT=0",
	), extra...)
}

// TestE2E_GRPCReflectionAndHealth: `serve --with-proxy` on loopback serves
// reflection on the control plane's gRPC port and the sidecar's ext_authz
// port (so grpcurl works without protos), the health service answers
// SERVING for each registered service name on both, and every name turns
// NOT_SERVING when the drain begins.
func TestE2E_GRPCReflectionAndHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv, proc := launchServerProcess(t, []string{"serve", "--with-proxy"}, withProxyEnv(t,
		"TALOS_SERVE_SHUTDOWN_DRAIN_DELAY=3s", "TALOS_PROXY_SHUTDOWN_DRAIN_DELAY=3s"))
	extauthz := srv.log.waitAddr(t, "ext_authz server started")

	ports := []struct {
		addr string
		want []string // services that must be listed (and resolved)
	}{
		{srv.grpc, []string{"talos.v2alpha1.ApiKeys", "talos.v2alpha1.SelfService", "talos.v2alpha1.DerivedKeys", "talos.sidecar.v1.Verifier"}},
		{extauthz, []string{"envoy.service.auth.v3.Authorization"}},
	}
	healthOf := map[string]healthpb.HealthClient{}
	names := map[string][]string{}
	for _, p := range ports {
		got, err := reflectServices(t, p.addr, p.want...)
		if err != nil {
			t.Fatalf("%s: reflection: %v", p.addr, err)
		}
		for _, w := range append(p.want, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection") {
			if !slices.Contains(got, w) {
				t.Errorf("%s: reflection lists %v, missing %s", p.addr, got, w)
			}
		}
		h := grpcHealth(t, p.addr)
		healthOf[p.addr], names[p.addr] = h, append(got, "")
		for _, name := range names[p.addr] {
			resp, err := h.Check(t.Context(), &healthpb.HealthCheckRequest{Service: name})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("%s: health of %q = %v, %v; want SERVING", p.addr, name, resp.GetStatus(), err)
			}
		}
		if _, err := h.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
			t.Errorf("%s: health of an unknown service: %v, want NotFound", p.addr, err)
		}
	}

	proc.stop() // the drain begins; the listeners keep serving for 3s
	for addr, h := range healthOf {
		for _, name := range names[addr] {
			eventually(t, addr+" health of "+name+" NOT_SERVING", 2500*time.Millisecond, func() bool {
				resp, err := h.Check(t.Context(), &healthpb.HealthCheckRequest{Service: name})
				return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
			})
		}
	}
}

// TestE2E_GRPCReflectionOff: with serve.grpc.reflection and
// proxy.extauthz.reflection false, neither port serves reflection; health
// still answers.
func TestE2E_GRPCReflectionOff(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv, _ := launchServer(t, []string{"serve", "--with-proxy"}, withProxyEnv(t,
		"TALOS_SERVE_GRPC_REFLECTION=false", "TALOS_PROXY_EXTAUTHZ_REFLECTION=false"))
	for _, addr := range []string{srv.grpc, srv.log.waitAddr(t, "ext_authz server started")} {
		if _, err := reflectServices(t, addr); status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: reflection with reflection off: %v, want Unimplemented", addr, err)
		}
		resp, err := grpcHealth(t, addr).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "grpc.health.v1.Health"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s: health = %v, %v", addr, resp.GetStatus(), err)
		}
	}
}
