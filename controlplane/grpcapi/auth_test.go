package grpcapi_test

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/talos-project/talos/controlplane/grpcapi"
	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	a := grpcapi.NewTokens([]string{"first-token", "second-token", ""})
	for auth, want := range map[string]bool{
		"Bearer first-token": true, "bearer second-token": true, "BEARER first-token": true, "Bearer third": false,
		"first-token": false, "Basic first-token": false, "": false, "Bearer ": false, "Bearer  first-token": false,
	} {
		if got := a.Match(auth); got != want {
			t.Errorf("Match(%q) = %v, want %v", auth, got, want)
		}
	}
	var none grpcapi.Tokens
	if none.Configured() || none.Match("") || none.Match("Bearer x") || grpcapi.NewTokens([]string{""}).Configured() {
		t.Error("an empty set must match nothing and not count as configured")
	}
}

// TestAuthCheck is the rule, surface by surface, configuration by
// configuration, caller by caller.
func TestAuthCheck(t *testing.T) {
	t.Parallel()
	const admin, side, wrong = "Bearer admin-token", "Bearer sidecar-token", "Bearer wrong-token"
	adminT, sideT := grpcapi.NewTokens([]string{"admin-token"}), grpcapi.NewTokens([]string{"sidecar-token"})
	configs := map[string]grpcapi.Auth{
		"none": {}, "admin": {Admin: adminT}, "sidecar": {Sidecar: sideT}, "both": {Admin: adminT, Sidecar: sideT},
	}
	const (
		ok     = codes.OK
		unauth = codes.Unauthenticated
		deny   = codes.PermissionDenied
	)
	// want[config] = codes for callers none, wrong, admin, sidecar.
	matrix := map[grpcapi.Surface]map[string][4]codes.Code{
		grpcapi.SurfaceAdmin: {
			"none": {ok, ok, ok, ok}, "admin": {unauth, unauth, ok, unauth},
			"sidecar": {ok, ok, ok, deny}, "both": {unauth, unauth, ok, deny},
		},
		grpcapi.SurfaceSidecar: {
			"none": {ok, ok, ok, ok}, "admin": {unauth, unauth, ok, unauth},
			"sidecar": {unauth, unauth, unauth, ok}, "both": {unauth, unauth, ok, ok},
		},
		grpcapi.SurfacePublic: {
			"none": {ok, ok, ok, ok}, "admin": {ok, ok, ok, ok}, "sidecar": {ok, ok, ok, ok}, "both": {ok, ok, ok, ok},
		},
	}
	methods := map[grpcapi.Surface][]string{
		grpcapi.SurfaceAdmin:   {pb.ApiKeys_AdminIssueApiKey_FullMethodName, pb.ApiKeys_AdminVerifyApiKey_FullMethodName},
		grpcapi.SurfaceSidecar: {sidecarpb.Verifier_Verify_FullMethodName, "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"},
		grpcapi.SurfacePublic:  {pb.SelfService_RevokeApiKey_FullMethodName, pb.DerivedKeys_GetJwks_FullMethodName, "/grpc.health.v1.Health/Check"},
	}
	for surface, byConfig := range matrix {
		for name, want := range byConfig {
			for i, caller := range []string{"", wrong, admin, side} {
				for _, m := range methods[surface] {
					if got := status.Code(configs[name].Check(m, caller)); got != want[i] {
						t.Errorf("%s, config %s, caller %q: %v, want %v", m, name, caller, got, want[i])
					}
				}
			}
		}
	}
	for _, m := range []string{"/talos.v2alpha1.ApiKeys/AdminNew", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", "talos.v2alpha1.ApiKeys/AdminIssueApiKey"} {
		for name, a := range configs {
			if got := status.Code(a.Check(m, admin)); got != codes.Unimplemented {
				t.Errorf("unknown method %q, config %s: %v, want Unimplemented", m, name, got)
			}
		}
	}
}

// TestEveryServedMethodIsListed: every method of every service a control
// plane serves has a surface.
func TestEveryServedMethodIsListed(t *testing.T) {
	t.Parallel()
	for _, d := range []grpc.ServiceDesc{pb.ApiKeys_ServiceDesc, pb.SelfService_ServiceDesc, pb.DerivedKeys_ServiceDesc, sidecarpb.Verifier_ServiceDesc} {
		for _, m := range d.Methods {
			if full := "/" + d.ServiceName + "/" + m.MethodName; grpcapi.SurfaceOf(full) == grpcapi.SurfaceUnknown {
				t.Errorf("%s is not in the auth table", full)
			}
		}
	}
	missing := grpcapi.Unlisted(map[string]grpc.ServiceInfo{
		"talos.v2alpha1.ApiKeys": {Methods: []grpc.MethodInfo{{Name: "AdminIssueApiKey"}, {Name: "AdminNew"}}},
	})
	if len(missing) != 1 || missing[0] != "/talos.v2alpha1.ApiKeys/AdminNew" {
		t.Errorf("Unlisted = %v", missing)
	}
}
