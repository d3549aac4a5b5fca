package grpcapi

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/talos-project/talos/controlplane/keys"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/telemetry"
)

// Deps are the collaborators of a Server.
type Deps struct {
	Keys   *keys.Service
	Logger *slog.Logger
	// Metrics records verifications; nil records nothing.
	Metrics *telemetry.VerifyMetrics
	Now     func() time.Time
}

// Server implements the ApiKeys, SelfService and DerivedKeys services.
type Server struct {
	pb.UnimplementedApiKeysServer
	pb.UnimplementedSelfServiceServer
	pb.UnimplementedDerivedKeysServer

	keys    *keys.Service
	log     *slog.Logger
	metrics *telemetry.VerifyMetrics
	now     func() time.Time
}

var (
	_ pb.ApiKeysServer     = (*Server)(nil)
	_ pb.SelfServiceServer = (*Server)(nil)
	_ pb.DerivedKeysServer = (*Server)(nil)
)

// New returns a Server.
func New(deps Deps) *Server {
	s := &Server{keys: deps.Keys, log: deps.Logger, metrics: deps.Metrics, now: deps.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// tenant is the caller's tenant. Multi-tenancy is not served yet, so every
// call belongs to the default network, as in Ory Talos's open-source build.
func tenant(context.Context) credential.Tenant { return credential.DefaultTenant }

func (s *Server) AdminIssueApiKey(ctx context.Context, r *pb.IssueApiKeyRequest) (*pb.IssueApiKeyResponse, error) {
	in, err := issueInput(r.GetName(), r.GetActorId(), r.GetScopes(), r.GetTtl(), r.GetMetadata(), r.GetRateLimitPolicy(), r.GetIpRestriction(), r.GetVisibility(), r.GetRequestId())
	if err != nil {
		return nil, s.toStatus(ctx, "AdminIssueApiKey", err)
	}
	k, secret, err := s.keys.Issue(ctx, tenant(ctx), in)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminIssueApiKey", err)
	}
	return &pb.IssueApiKeyResponse{IssuedApiKey: apiconv.IssuedToPB(&k, s.now()), Secret: secret}, nil
}

func (s *Server) AdminGetIssuedApiKey(ctx context.Context, r *pb.AdminGetIssuedApiKeyRequest) (*pb.IssuedApiKey, error) {
	k, err := s.keys.Get(ctx, tenant(ctx), credential.KindIssued, credential.KeyID(r.GetKeyId()))
	if err != nil {
		return nil, s.toStatus(ctx, "AdminGetIssuedApiKey", err)
	}
	return apiconv.IssuedToPB(&k, s.now()), nil
}

func (s *Server) AdminListIssuedApiKeys(ctx context.Context, r *pb.ListIssuedApiKeysRequest) (*pb.ListIssuedApiKeysResponse, error) {
	ks, next, err := s.keys.List(ctx, tenant(ctx), credential.KindIssued, keys.ListInput{PageSize: int(r.GetPageSize()), PageToken: r.GetPageToken(), Filter: r.GetFilter()})
	if err != nil {
		return nil, s.toStatus(ctx, "AdminListIssuedApiKeys", err)
	}
	now := s.now()
	out := &pb.ListIssuedApiKeysResponse{NextPageToken: next, IssuedApiKeys: make([]*pb.IssuedApiKey, len(ks))}
	for i := range ks {
		out.IssuedApiKeys[i] = apiconv.IssuedToPB(&ks[i], now)
	}
	return out, nil
}

func (s *Server) AdminUpdateIssuedApiKey(ctx context.Context, r *pb.AdminUpdateIssuedApiKeyRequest) (*pb.IssuedApiKey, error) {
	b := r.GetIssuedApiKey()
	p, err := patch(r.GetUpdateMask().GetPaths(), b.GetName(), b.GetScopes(), b.GetMetadata(), b.GetRateLimitPolicy(), b.GetIpRestriction())
	if err != nil {
		return nil, s.toStatus(ctx, "AdminUpdateIssuedApiKey", err)
	}
	k, err := s.keys.Update(ctx, tenant(ctx), credential.KindIssued, credential.KeyID(b.GetKeyId()), p)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminUpdateIssuedApiKey", err)
	}
	return apiconv.IssuedToPB(&k, s.now()), nil
}

func (s *Server) AdminRotateIssuedApiKey(ctx context.Context, r *pb.AdminRotateIssuedApiKeyRequest) (*pb.RotateIssuedApiKeyResponse, error) {
	in, err := rotateInput(r)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminRotateIssuedApiKey", err)
	}
	nk, secret, old, err := s.keys.Rotate(ctx, tenant(ctx), credential.KeyID(r.GetKeyId()), in)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminRotateIssuedApiKey", err)
	}
	now := s.now()
	return &pb.RotateIssuedApiKeyResponse{IssuedApiKey: apiconv.IssuedToPB(&nk, now), Secret: secret, OldIssuedApiKey: apiconv.IssuedToPB(&old, now)}, nil
}

func (s *Server) AdminRevokeIssuedApiKey(ctx context.Context, r *pb.AdminRevokeIssuedApiKeyRequest) (*emptypb.Empty, error) {
	return s.revoke(ctx, "AdminRevokeIssuedApiKey", credential.KindIssued, r.GetKeyId(), r.GetReason(), r.GetDescription())
}

func (s *Server) AdminRevokeImportedApiKey(ctx context.Context, r *pb.AdminRevokeImportedApiKeyRequest) (*emptypb.Empty, error) {
	return s.revoke(ctx, "AdminRevokeImportedApiKey", credential.KindImported, r.GetKeyId(), r.GetReason(), r.GetDescription())
}

func (s *Server) revoke(ctx context.Context, method string, kind credential.Kind, id string, reason pb.RevocationReason, description string) (*emptypb.Empty, error) {
	rr, err := apiconv.ReasonFromPB(reason)
	if err == nil {
		err = s.keys.Revoke(ctx, tenant(ctx), kind, credential.KeyID(id), rr, description)
	}
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Server) AdminImportApiKey(ctx context.Context, r *pb.ImportApiKeyRequest) (*pb.ImportedApiKey, error) {
	in, err := importInput(r)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminImportApiKey", err)
	}
	k, err := s.keys.Import(ctx, tenant(ctx), in)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminImportApiKey", err)
	}
	return apiconv.ImportedToPB(&k, s.now()), nil
}

func (s *Server) AdminGetImportedApiKey(ctx context.Context, r *pb.AdminGetImportedApiKeyRequest) (*pb.ImportedApiKey, error) {
	k, err := s.keys.Get(ctx, tenant(ctx), credential.KindImported, credential.KeyID(r.GetKeyId()))
	if err != nil {
		return nil, s.toStatus(ctx, "AdminGetImportedApiKey", err)
	}
	return apiconv.ImportedToPB(&k, s.now()), nil
}

func (s *Server) AdminListImportedApiKeys(ctx context.Context, r *pb.ListImportedApiKeysRequest) (*pb.ListImportedApiKeysResponse, error) {
	ks, next, err := s.keys.List(ctx, tenant(ctx), credential.KindImported, keys.ListInput{PageSize: int(r.GetPageSize()), PageToken: r.GetPageToken(), Filter: r.GetFilter()})
	if err != nil {
		return nil, s.toStatus(ctx, "AdminListImportedApiKeys", err)
	}
	now := s.now()
	out := &pb.ListImportedApiKeysResponse{NextPageToken: next, ImportedApiKeys: make([]*pb.ImportedApiKey, len(ks))}
	for i := range ks {
		out.ImportedApiKeys[i] = apiconv.ImportedToPB(&ks[i], now)
	}
	return out, nil
}

func (s *Server) AdminUpdateImportedApiKey(ctx context.Context, r *pb.AdminUpdateImportedApiKeyRequest) (*pb.ImportedApiKey, error) {
	b := r.GetImportedApiKey()
	p, err := patch(r.GetUpdateMask().GetPaths(), b.GetName(), b.GetScopes(), b.GetMetadata(), b.GetRateLimitPolicy(), b.GetIpRestriction())
	if err != nil {
		return nil, s.toStatus(ctx, "AdminUpdateImportedApiKey", err)
	}
	k, err := s.keys.Update(ctx, tenant(ctx), credential.KindImported, credential.KeyID(b.GetKeyId()), p)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminUpdateImportedApiKey", err)
	}
	return apiconv.ImportedToPB(&k, s.now()), nil
}

func (s *Server) AdminDeleteImportedApiKey(ctx context.Context, r *pb.AdminDeleteImportedApiKeyRequest) (*emptypb.Empty, error) {
	if err := s.keys.Delete(ctx, tenant(ctx), credential.KeyID(r.GetKeyId())); err != nil {
		return nil, s.toStatus(ctx, "AdminDeleteImportedApiKey", err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Server) AdminBatchCreateImportedApiKeys(ctx context.Context, r *pb.BatchCreateImportedApiKeysRequest) (*pb.BatchCreateImportedApiKeysResponse, error) {
	return s.batchImport(ctx, r)
}

func (s *Server) AdminVerifyApiKey(ctx context.Context, r *pb.VerifyApiKeyRequest) (*pb.VerifyApiKeyResponse, error) {
	start := time.Now()
	res, rs, err := s.keys.VerifyPublic(ctx, s.presented(ctx, r))
	s.metrics.Observe(res.Type, err, time.Since(start))
	if err != nil && !credential.IsVerdict(err) {
		return nil, s.toStatus(ctx, "AdminVerifyApiKey", err)
	}
	setRateHeaders(ctx, rs)
	return withRate(apiconv.VerifyResponse(res, err), rs), nil
}

func (s *Server) AdminBatchVerifyApiKeys(ctx context.Context, r *pb.BatchVerifyApiKeysRequest) (*pb.BatchVerifyApiKeysResponse, error) {
	ps := make([]credential.Presented, len(r.GetRequests()))
	for i, req := range r.GetRequests() {
		ps[i] = s.presented(ctx, req)
	}
	start := time.Now()
	vs, states, err := s.keys.BatchVerifyPublic(ctx, ps)
	if err != nil {
		return nil, s.toStatus(ctx, "AdminBatchVerifyApiKeys", err)
	}
	per := time.Since(start) / time.Duration(len(vs))
	for _, v := range vs {
		s.metrics.Observe(v.Result.Type, v.Err, per)
	}
	out := &pb.BatchVerifyApiKeysResponse{Results: make([]*pb.VerifyApiKeyResponse, len(vs))}
	for i, v := range vs {
		err := v.Err
		if err != nil && !credential.IsVerdict(err) && credential.KindOf(err) != credential.ErrInvalidArgument {
			return nil, s.toStatus(ctx, "AdminBatchVerifyApiKeys", err)
		}
		out.Results[i] = withRate(apiconv.VerifyResponse(v.Result, err), states[i])
	}
	setBatchRetryAfter(ctx, states)
	return out, nil
}

func (s *Server) presented(ctx context.Context, r *pb.VerifyApiKeyRequest) credential.Presented {
	return credential.Presented{
		Tenant:            tenant(ctx),
		Credential:        r.GetCredential(),
		ClientIP:          clientIP(ctx),
		ExpectedAudiences: r.GetExpectedAudiences(),
	}
}

func (s *Server) AdminDeriveToken(ctx context.Context, r *pb.DeriveTokenRequest) (*pb.DeriveTokenResponse, error) {
	const method = "AdminDeriveToken"
	in := keys.DeriveInput{
		Presented: credential.Presented{Tenant: tenant(ctx), Credential: r.GetCredential(), ClientIP: clientIP(ctx)},
		Scopes:    r.GetScopes(), CustomClaims: r.GetCustomClaims().AsMap(), Audiences: r.GetAudiences(),
	}
	switch r.GetAlgorithm() {
	case pb.TokenAlgorithm_TOKEN_ALGORITHM_UNSPECIFIED, pb.TokenAlgorithm_TOKEN_ALGORITHM_JWT:
		in.Algorithm = keys.AlgorithmJWT
	case pb.TokenAlgorithm_TOKEN_ALGORITHM_MACAROON:
		in.Algorithm = keys.AlgorithmMacaroon
	default:
		return nil, s.toStatus(ctx, method, credential.Invalid("unknown algorithm"))
	}
	var err error
	if in.TTL, err = apiconv.ParseDuration(r.GetTtl()); err != nil {
		return nil, s.toStatus(ctx, method, credential.Invalid("ttl: "+err.Error()))
	}
	d, err := s.keys.Derive(ctx, in)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	claims, err := structpb.NewStruct(d.Claims)
	if err != nil {
		claims = nil
	}
	return &pb.DeriveTokenResponse{Token: &pb.Token{
		Token: d.Token, ExpireTime: timestamppb.New(d.ExpireTime), Scopes: d.Scopes, Claims: claims, Audiences: d.Audiences,
	}}, nil
}

func (s *Server) RevokeApiKey(ctx context.Context, r *pb.SelfRevokeApiKeyRequest) (*pb.SelfRevokeApiKeyResponse, error) {
	reason, err := apiconv.ReasonFromPB(r.GetReason())
	if err == nil {
		p := credential.Presented{Tenant: tenant(ctx), Credential: r.GetCredential(), ClientIP: clientIP(ctx)}
		err = s.keys.SelfRevoke(ctx, p, reason)
	}
	if err != nil {
		return nil, s.toStatus(ctx, "RevokeApiKey", err)
	}
	return &pb.SelfRevokeApiKeyResponse{}, nil
}
