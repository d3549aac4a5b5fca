package grpcapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// Surface says which credential a method needs. It is looked up by the RPC
// full method name, the one name both transports know: the gRPC listener from
// the stream, the HTTP API from the gateway route it resolved.
type Surface uint8

const (
	// SurfaceUnknown is every method missing from the table: refused.
	SurfaceUnknown Surface = iota
	// SurfacePublic needs no credential: self-service, JWKS, health.
	SurfacePublic
	// SurfaceSidecar is the sidecar protocol (Verifier, xDS): an admin or a
	// sidecar token as soon as either list is configured.
	SurfaceSidecar
	// SurfaceAdmin is the admin API: an admin token as soon as admin tokens
	// are configured; a sidecar token never.
	SurfaceAdmin
)

func (s Surface) String() string {
	switch s {
	case SurfacePublic:
		return "public"
	case SurfaceSidecar:
		return "sidecar"
	case SurfaceAdmin:
		return "admin"
	}
	return "unknown"
}

// surfaces is THE auth table, keyed by RPC full method name. Every method a
// control plane registers must be listed here (controlplane.New refuses to
// start otherwise, see [Unlisted]); a method that is not is refused on both
// transports.
var surfaces = map[string]Surface{
	pb.ApiKeys_AdminIssueApiKey_FullMethodName:                SurfaceAdmin,
	pb.ApiKeys_AdminGetIssuedApiKey_FullMethodName:            SurfaceAdmin,
	pb.ApiKeys_AdminListIssuedApiKeys_FullMethodName:          SurfaceAdmin,
	pb.ApiKeys_AdminUpdateIssuedApiKey_FullMethodName:         SurfaceAdmin,
	pb.ApiKeys_AdminRotateIssuedApiKey_FullMethodName:         SurfaceAdmin,
	pb.ApiKeys_AdminRevokeIssuedApiKey_FullMethodName:         SurfaceAdmin,
	pb.ApiKeys_AdminImportApiKey_FullMethodName:               SurfaceAdmin,
	pb.ApiKeys_AdminBatchCreateImportedApiKeys_FullMethodName: SurfaceAdmin,
	pb.ApiKeys_AdminGetImportedApiKey_FullMethodName:          SurfaceAdmin,
	pb.ApiKeys_AdminListImportedApiKeys_FullMethodName:        SurfaceAdmin,
	pb.ApiKeys_AdminUpdateImportedApiKey_FullMethodName:       SurfaceAdmin,
	pb.ApiKeys_AdminRevokeImportedApiKey_FullMethodName:       SurfaceAdmin,
	pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName:       SurfaceAdmin,
	pb.ApiKeys_AdminVerifyApiKey_FullMethodName:               SurfaceAdmin,
	pb.ApiKeys_AdminBatchVerifyApiKeys_FullMethodName:         SurfaceAdmin,
	pb.ApiKeys_AdminDeriveToken_FullMethodName:                SurfaceAdmin,

	pb.SelfService_RevokeApiKey_FullMethodName: SurfacePublic,
	pb.DerivedKeys_GetJwks_FullMethodName:      SurfacePublic,

	sidecarpb.Verifier_Verify_FullMethodName:      SurfaceSidecar,
	sidecarpb.Verifier_BatchVerify_FullMethodName: SurfaceSidecar,
	// Public facts (like the JWKS), but only sidecars need them.
	sidecarpb.Verifier_GetTokenPolicy_FullMethodName: SurfaceSidecar,
	// The xDS stream names the keys that change, and serves Envoy's
	// listeners and clusters.
	discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName:  SurfaceSidecar,
	discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName: SurfaceSidecar,

	// Health probes carry no credential. There is no reflection service.
	healthpb.Health_Check_FullMethodName: SurfacePublic,
	healthpb.Health_Watch_FullMethodName: SurfacePublic,
	healthpb.Health_List_FullMethodName:  SurfacePublic,
}

// SurfaceOf returns the surface of an RPC full method name
// ("/package.Service/Method"); SurfaceUnknown when it is not in the table.
func SurfaceOf(fullMethod string) Surface { return surfaces[fullMethod] }

// Unlisted returns the methods of services that are missing from the auth
// table; a server must not start with any.
func Unlisted(services map[string]grpc.ServiceInfo) []string {
	var out []string
	for name, info := range services {
		for _, m := range info.Methods {
			if full := "/" + name + "/" + m.Name; SurfaceOf(full) == SurfaceUnknown {
				out = append(out, full)
			}
		}
	}
	return out
}

// Tokens is a set of static bearer tokens. The zero value holds none and
// matches nothing: whether an empty set means "open" is decided by
// [Auth.Check], in one place, never by the set. Tokens are compared as
// SHA-256 digests with crypto/subtle, so neither their content nor their
// length leaks through timing. Safe for concurrent use.
type Tokens struct{ digests [][32]byte }

// NewTokens returns the set of tokens; empty strings are ignored.
func NewTokens(tokens []string) Tokens {
	var t Tokens
	for _, s := range tokens {
		if s != "" {
			t.digests = append(t.digests, sha256.Sum256([]byte(s)))
		}
	}
	return t
}

// Configured reports whether the set holds any token.
func (t Tokens) Configured() bool { return len(t.digests) > 0 }

// Match reports whether the Authorization value ("Bearer <token>", scheme
// case-insensitive) carries one of the tokens; false for an empty set. Every
// token is compared, with no early exit.
func (t Tokens) Match(authorization string) bool {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(t.digests) == 0 {
		return false
	}
	d := sha256.Sum256([]byte(token))
	match := 0
	for i := range t.digests {
		match |= subtle.ConstantTimeCompare(d[:], t.digests[i][:])
	}
	return match == 1
}

// Auth is the one rule that decides who may call what, on the gRPC listener
// and on the HTTP API alike:
//
//   - a public method needs nothing;
//   - the sidecar protocol needs an admin or a sidecar token as soon as any
//     token (admin or sidecar) is configured;
//   - an admin method needs an admin token as soon as admin tokens are
//     configured, and is refused to a sidecar token even when none are (then
//     the admin API is open, as in Ory Talos, to every other caller);
//   - a method missing from the table is refused.
//
// The zero Auth configures no token: everything known is open.
type Auth struct {
	Admin   Tokens
	Sidecar Tokens
}

// The refusals, built once. Their messages carry nothing of the request.
var (
	errUnauthenticated = authStatus(credential.ErrUnauthenticated, "A valid bearer token is required.")
	errSidecarOnAdmin  = authStatus(credential.ErrPermissionDenied, "A sidecar token cannot call the admin API.")
	errUnknownMethod   = status.Error(codes.Unimplemented, "unknown method")
)

func authStatus(sentinel error, msg string) error {
	d := errcode.Describe(sentinel)
	st := status.New(d.GRPC, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: d.Reason, Domain: errcode.Domain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// Check decides whether a caller presenting the Authorization value may call
// fullMethod. It returns nil or a gRPC status error: UNAUTHENTICATED without a
// valid credential, PERMISSION_DENIED for a sidecar token on the admin API,
// UNIMPLEMENTED for a method missing from the table.
func (a Auth) Check(fullMethod, authorization string) error {
	switch SurfaceOf(fullMethod) {
	case SurfacePublic:
		return nil
	case SurfaceSidecar:
		if !a.Admin.Configured() && !a.Sidecar.Configured() {
			return nil
		}
		admin, sidecar := a.Admin.Match(authorization), a.Sidecar.Match(authorization)
		if admin || sidecar {
			return nil
		}
		return errUnauthenticated
	case SurfaceAdmin:
		admin, sidecar := a.Admin.Match(authorization), a.Sidecar.Match(authorization)
		switch {
		case admin:
			return nil
		case sidecar:
			return errSidecarOnAdmin
		case a.Admin.Configured():
			return errUnauthenticated
		}
		return nil
	}
	return errUnknownMethod
}

// authorization returns the first "authorization" value of md, or "".
func authorization(md metadata.MD) string {
	if v := md.Get("authorization"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// TapHandle runs Check when a stream opens, before its first message is read,
// so an unauthenticated caller cannot make the server buffer a request
// (grpc.InTapHandle).
func (a Auth) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		return ctx, a.Check(info.FullMethodName, authorization(info.Header))
	}
}

// UnaryInterceptor runs Check on every unary call: defence in depth behind
// the tap handle on the gRPC listener, and the check itself for the HTTP API,
// whose calls reach the services in process.
func (a Auth) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if err := a.Check(info.FullMethod, authorization(md)); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streams (xDS).
func (a Auth) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if err := a.Check(info.FullMethod, authorization(md)); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
