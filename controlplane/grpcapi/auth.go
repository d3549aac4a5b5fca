package grpcapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionalphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// Surface groups the methods whose open or enforced state goes together. It
// is looked up by the RPC full method name, the one name both transports
// know: the gRPC listener from the stream, the HTTP API from the gateway
// route it resolved.
type Surface uint8

const (
	// SurfaceUnknown is every method missing from the table: refused.
	SurfaceUnknown Surface = iota
	// SurfacePublic needs no credential: self-service, JWKS, health.
	SurfacePublic
	// SurfaceSidecar is the sidecar protocol (Verifier, xDS), enforced as
	// soon as any credential is configured.
	SurfaceSidecar
	// SurfaceAdmin is the admin API, enforced as soon as a credential whose
	// role reaches an admin method is configured.
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

// roleSet is a set of roles, one bit per credential.Role.
type roleSet uint8

func rolesOf(roles ...credential.Role) roleSet {
	var s roleSet
	for _, r := range roles {
		s |= roleBit(r)
	}
	return s
}

// roleBit is the bit of r; none for RoleNone or a role this table does not
// know.
func roleBit(r credential.Role) roleSet {
	if r == credential.RoleNone || !slices.Contains(credential.Roles, r) {
		return 0
	}
	return 1 << r
}

// method is one row of the auth table: its surface and the roles that reach
// it.
type method struct {
	surface Surface
	roles   roleSet
}

// Who reaches what: admin everything; operator every admin method but import
// and delete; verifier verify, batch verify and derive; sidecar the sidecar
// protocol.
var (
	adminOnly  = method{SurfaceAdmin, rolesOf(credential.RoleAdmin)}
	operator   = method{SurfaceAdmin, rolesOf(credential.RoleAdmin, credential.RoleOperator)}
	verifier   = method{SurfaceAdmin, rolesOf(credential.RoleAdmin, credential.RoleOperator, credential.RoleVerifier)}
	sidecar    = method{SurfaceSidecar, rolesOf(credential.RoleAdmin, credential.RoleSidecar)}
	publicCall = method{SurfacePublic, 0}
)

// methods is THE auth table, keyed by RPC full method name. Every method a
// control plane registers must be listed here (controlplane.New refuses to
// start otherwise, see [Unlisted]); a method that is not is refused on both
// transports.
var methods = map[string]method{
	pb.ApiKeys_AdminIssueApiKey_FullMethodName:          operator,
	pb.ApiKeys_AdminGetIssuedApiKey_FullMethodName:      operator,
	pb.ApiKeys_AdminListIssuedApiKeys_FullMethodName:    operator,
	pb.ApiKeys_AdminUpdateIssuedApiKey_FullMethodName:   operator,
	pb.ApiKeys_AdminRotateIssuedApiKey_FullMethodName:   operator,
	pb.ApiKeys_AdminRevokeIssuedApiKey_FullMethodName:   operator,
	pb.ApiKeys_AdminGetImportedApiKey_FullMethodName:    operator,
	pb.ApiKeys_AdminListImportedApiKeys_FullMethodName:  operator,
	pb.ApiKeys_AdminUpdateImportedApiKey_FullMethodName: operator,
	pb.ApiKeys_AdminRevokeImportedApiKey_FullMethodName: operator,
	// Importing brings a secret in from outside; deleting erases the record
	// of a key. Neither is an operator's.
	pb.ApiKeys_AdminImportApiKey_FullMethodName:               adminOnly,
	pb.ApiKeys_AdminBatchCreateImportedApiKeys_FullMethodName: adminOnly,
	pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName:       adminOnly,
	pb.ApiKeys_AdminVerifyApiKey_FullMethodName:               verifier,
	pb.ApiKeys_AdminBatchVerifyApiKeys_FullMethodName:         verifier,
	pb.ApiKeys_AdminDeriveToken_FullMethodName:                verifier,

	pb.SelfService_RevokeApiKey_FullMethodName: publicCall,
	pb.DerivedKeys_GetJwks_FullMethodName:      publicCall,

	sidecarpb.Verifier_Verify_FullMethodName:      sidecar,
	sidecarpb.Verifier_BatchVerify_FullMethodName: sidecar,
	// Public facts (like the JWKS), but only sidecars need them.
	sidecarpb.Verifier_GetTokenPolicy_FullMethodName: sidecar,
	// The xDS stream names the keys that change, and serves Envoy's
	// listeners and clusters.
	discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName:  sidecar,
	discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName: sidecar,

	// Health probes carry no credential. Reflection (serve.grpc.reflection)
	// tells the schema, which is public like the protos.
	healthpb.Health_Check_FullMethodName:                                   publicCall,
	healthpb.Health_Watch_FullMethodName:                                   publicCall,
	healthpb.Health_List_FullMethodName:                                    publicCall,
	reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName:      publicCall,
	reflectionalphapb.ServerReflection_ServerReflectionInfo_FullMethodName: publicCall,
}

// SurfaceOf returns the surface of an RPC full method name
// ("/package.Service/Method"); SurfaceUnknown when it is not in the table.
func SurfaceOf(fullMethod string) Surface { return methods[fullMethod].surface }

// Allows reports whether a caller holding role reaches fullMethod: always for
// a public method, never for one missing from the table.
func Allows(role credential.Role, fullMethod string) bool {
	m, ok := methods[fullMethod]
	return ok && (m.surface == SurfacePublic || m.roles&roleBit(role) != 0)
}

// Methods returns every method of the auth table, sorted.
func Methods() []string {
	out := make([]string, 0, len(methods))
	for m := range methods {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

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

// Token is a static bearer token and the role it grants.
type Token struct {
	Value string
	Role  credential.Role
}

// IdentityRule grants Role to a caller whose certificate identity matches:
// exactly one of Subject (the RFC 2253 string, "CN=ops,O=Talos"), URISAN (a
// URI SAN, a SPIFFE ID say) or DNSSAN (a DNS SAN) is set, a pattern with
// path.Match globs (credential.MatchIdentity).
type IdentityRule struct {
	Subject, URISAN, DNSSAN string
	Role                    credential.Role
}

// AuthConfig is what NewAuth builds an Auth from.
type AuthConfig struct {
	Tokens     []Token
	Identities []IdentityRule
	// TrustXFCC takes the certificate identity from Envoy's
	// x-forwarded-client-cert header, instead of the connection's own
	// certificate, when the direct peer is in XFCCFrom.
	TrustXFCC bool
	XFCCFrom  []netip.Prefix
}

// Auth is the one rule that decides who may call what, on the gRPC listener
// and on the HTTP API alike. A caller's roles are the union of the roles of
// every credential it proves: a bearer token, and the identity of its
// verified client certificate (or, from a trusted mesh proxy, the one the
// proxy forwards in x-forwarded-client-cert). Then, for a method:
//
//   - public: allowed;
//   - missing from the table: refused (UNIMPLEMENTED);
//   - one of the caller's roles reaches it: allowed;
//   - the caller proved a credential, but none of its roles reaches it:
//     PERMISSION_DENIED, whether the surface is enforced or not;
//   - the caller proved nothing (no credential, an unknown token, a
//     certificate that matches no rule): UNAUTHENTICATED on an enforced
//     surface, allowed on an open one (the admin API of Ory Talos is open
//     until tokens are configured).
//
// The admin surface is enforced as soon as a credential whose role reaches
// an admin method is configured; the sidecar protocol as soon as any
// credential is. A nil *Auth, or the zero Auth, configures nothing:
// everything known is open. Safe for concurrent use.
type Auth struct {
	tokens          []tokenDigest
	identities      []identityRule
	identityKinds   uint8          // the kinds the identity rules match, 1<<identityKind each
	xfccFrom        []netip.Prefix // non-empty exactly when XFCC is trusted
	adminEnforced   bool
	sidecarEnforced bool
}

// tokenDigest is a token as Check compares it: its SHA-256 digest, so that
// neither its content nor its length leaks through timing.
type tokenDigest struct {
	digest [32]byte
	roles  roleSet
}

// NewAuth validates c and builds its rule. Every role must be a configured
// one (not RoleNone), every token non-empty, every identity rule must set
// exactly one valid pattern, TrustXFCC needs XFCCFrom and XFCCFrom needs
// TrustXFCC.
func NewAuth(c AuthConfig) (*Auth, error) {
	a := &Auth{}
	var configured []credential.Role
	for i, t := range c.Tokens {
		if t.Value == "" {
			return nil, fmt.Errorf("token %d: must not be empty", i)
		}
		if roleBit(t.Role) == 0 {
			return nil, fmt.Errorf("token %d: invalid role %v", i, t.Role)
		}
		a.tokens = append(a.tokens, tokenDigest{digest: sha256.Sum256([]byte(t.Value)), roles: roleBit(t.Role)})
		configured = append(configured, t.Role)
	}
	for i, r := range c.Identities {
		rule, err := newIdentityRule(r)
		if err != nil {
			return nil, fmt.Errorf("identity %d: %w", i, err)
		}
		a.identities = append(a.identities, rule)
		a.identityKinds |= 1 << rule.kind
		configured = append(configured, r.Role)
	}
	switch {
	case c.TrustXFCC && len(c.XFCCFrom) == 0:
		return nil, errors.New("trusting x-forwarded-client-cert needs the peer prefixes it is trusted from")
	case !c.TrustXFCC && len(c.XFCCFrom) > 0:
		return nil, errors.New("x-forwarded-client-cert peer prefixes are set but the header is not trusted")
	}
	for _, p := range c.XFCCFrom {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid x-forwarded-client-cert peer prefix %v", p)
		}
	}
	a.xfccFrom = slices.Clone(c.XFCCFrom)
	for _, r := range configured {
		a.sidecarEnforced = true
		if reachesAdmin(r) {
			a.adminEnforced = true
		}
	}
	return a, nil
}

// NewTokenAuth is the rule of static tokens alone: admin tokens with
// RoleAdmin, sidecar tokens with RoleSidecar. Empty strings are ignored.
func NewTokenAuth(admin, sidecar []string) *Auth {
	var c AuthConfig
	for _, s := range admin {
		if s != "" {
			c.Tokens = append(c.Tokens, Token{Value: s, Role: credential.RoleAdmin})
		}
	}
	for _, s := range sidecar {
		if s != "" {
			c.Tokens = append(c.Tokens, Token{Value: s, Role: credential.RoleSidecar})
		}
	}
	a, err := NewAuth(c)
	if err != nil {
		panic("grpcapi: token auth: " + err.Error()) // unreachable: every token is non-empty with a valid role
	}
	return a
}

// reachesAdmin reports whether role reaches any method of the admin surface.
func reachesAdmin(role credential.Role) bool {
	for _, m := range methods {
		if m.surface == SurfaceAdmin && m.roles&roleBit(role) != 0 {
			return true
		}
	}
	return false
}

// AdminEnforced reports whether the admin surface refuses unauthenticated
// callers. While it does not, the HTTP API answers admin calls only under
// known Host names.
func (a *Auth) AdminEnforced() bool { return a != nil && a.adminEnforced }

// SidecarEnforced reports whether the sidecar protocol refuses
// unauthenticated callers.
func (a *Auth) SidecarEnforced() bool { return a != nil && a.sidecarEnforced }

// The refusals, built once. Their messages carry nothing of the request and
// never say which check failed.
var (
	errUnauthenticated = authStatus(credential.ErrUnauthenticated, "A valid credential is required.")
	errPermission      = authStatus(credential.ErrPermissionDenied, "The caller is not allowed to call this method.")
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

// Check decides whether c may call fullMethod. It returns nil or a gRPC
// status error: UNAUTHENTICATED when c proves no credential on an enforced
// surface, PERMISSION_DENIED when it proves one whose roles do not reach the
// method, UNIMPLEMENTED for a method missing from the table.
func (a *Auth) Check(fullMethod string, c Caller) error {
	m, ok := methods[fullMethod]
	switch {
	case !ok:
		return errUnknownMethod
	case m.surface == SurfacePublic:
		return nil
	}
	have := a.roles(c)
	switch {
	case have&m.roles != 0:
		return nil
	case have != 0:
		return errPermission
	case m.surface == SurfaceAdmin && a.AdminEnforced(), m.surface == SurfaceSidecar && a.SidecarEnforced():
		return errUnauthenticated
	}
	return nil
}

// roles is the union of the roles of every credential c proves.
func (a *Auth) roles(c Caller) roleSet {
	if a == nil {
		return 0
	}
	return a.tokenRoles(c.Authorization) | a.identityRoles(c)
}

// tokenRoles returns the roles of the tokens the Authorization value
// ("Bearer <token>", scheme case-insensitive) carries. Every token is
// compared, with no early exit and no branch on a comparison.
func (a *Auth) tokenRoles(authorization string) roleSet {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(a.tokens) == 0 {
		return 0
	}
	d := sha256.Sum256([]byte(token))
	var have roleSet
	for i := range a.tokens {
		eq := subtle.ConstantTimeCompare(d[:], a.tokens[i].digest[:]) // 1 or 0
		have |= a.tokens[i].roles & roleSet(-eq)
	}
	return have
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
//
// The tap sees the whole caller, certificate included: grpc-go (checked in
// v1.85.0) puts the peer, with the TLS AuthInfo of the handshake, into the
// connection's context before it serves streams (Server.serveStreams:
// peer.NewContext), and every stream's context, the one the tap is given,
// derives from it (http2Server.operateHeaders). Were a later grpc-go to
// drop it, the tap would see fewer credentials, never more: it could then
// refuse a certificate holder (fail closed) or let an anonymous call through
// on an open surface, and the interceptors, which run on every call with the
// same rule, would still refuse what the full caller may not do.
func (a *Auth) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		return ctx, a.Check(info.FullMethodName, grpcCaller(ctx, info.Header))
	}
}

// UnaryInterceptor runs Check on every unary call of the gRPC listener:
// defence in depth behind the tap handle.
func (a *Auth) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if err := a.Check(info.FullMethod, grpcCaller(ctx, md)); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streams (xDS).
func (a *Auth) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if err := a.Check(info.FullMethod, grpcCaller(ss.Context(), md)); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
