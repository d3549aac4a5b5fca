package main

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestE2E_EnvoyResourcesOverADS points an Envoy-like delta ADS client at
// `talos serve` with envoy.enabled: it gets the ingress listener that wires
// ext_authz to the local sidecar, valid by Envoy's own rules.
func TestE2E_EnvoyResourcesOverADS(t *testing.T) {
	srv := startServer(t, "TALOS_ENVOY_ENABLED=true", "TALOS_ENVOY_LISTENER_PORT=10000", "TALOS_ENVOY_REQUIRED_SCOPES=read")
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "envoy-1", Cluster: "app"}, TypeUrl: listenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTypeUrl() != listenerType || len(resp.GetResources()) != 1 {
		t.Fatalf("response = %v", resp)
	}
	var l listenerv3.Listener
	if err := resp.GetResources()[0].GetResource().UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("listener does not validate: %v", err)
	}
	if l.GetAddress().GetSocketAddress().GetPortValue() != 10000 {
		t.Fatalf("listener = %v", &l)
	}
}
