package serve

import (
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// RegisterHealth registers the gRPC health service on srv and, with
// withReflection, server reflection (grpc.reflection.v1 and v1alpha). Call it
// after every other service is registered: the health service answers
// SERVING for "" (the whole server) and for the name of each service then
// registered, itself and reflection included. Give the returned server's
// Shutdown to Group.OnShutdown: it turns every name NOT_SERVING when the
// drain begins.
func RegisterHealth(srv *grpc.Server, withReflection bool) *health.Server {
	h := health.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	if withReflection {
		reflection.Register(srv)
	}
	names := make([]string, 0, len(srv.GetServiceInfo()))
	for name := range srv.GetServiceInfo() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		h.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return h
}
