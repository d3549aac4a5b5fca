package grpcapi

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/talos-project/talos/controlplane/keys"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

func attributes(name string, scopes []string, md *structpb.Struct, rp *pb.RateLimitPolicy, ip *pb.IPRestriction) (keys.Attributes, error) {
	a := keys.Attributes{Name: name, Scopes: scopes}
	var err error
	if a.Metadata, err = apiconv.MetadataFromPB(md); err != nil {
		return a, err
	}
	if a.RatePolicy, err = apiconv.RatePolicyFromPB(rp); err != nil {
		return a, err
	}
	if a.AllowedCIDRs, err = apiconv.CIDRsFromPB(ip); err != nil {
		return a, err
	}
	return a, nil
}

func issueInput(name, actor string, scopes []string, ttl string, md *structpb.Struct, rp *pb.RateLimitPolicy, ip *pb.IPRestriction, vis pb.KeyVisibility, requestID string) (keys.IssueInput, error) {
	a, err := attributes(name, scopes, md, rp, ip)
	if err != nil {
		return keys.IssueInput{}, err
	}
	in := keys.IssueInput{Attributes: a, ActorID: actor, RequestID: requestID}
	if in.TTL, err = apiconv.ParseDuration(ttl); err != nil {
		return in, credential.Invalid("ttl: " + err.Error())
	}
	if in.Visibility, err = apiconv.VisibilityFromPB(vis); err != nil {
		return in, err
	}
	return in, nil
}

func importInput(r *pb.ImportApiKeyRequest) (keys.ImportInput, error) {
	in, err := issueInput(r.GetName(), r.GetActorId(), r.GetScopes(), r.GetTtl(), r.GetMetadata(), r.GetRateLimitPolicy(), r.GetIpRestriction(), r.GetVisibility(), r.GetRequestId())
	return keys.ImportInput{IssueInput: in, RawKey: r.GetRawKey()}, err
}

var maskFields = map[string]keys.FieldSet{
	"name":              keys.FieldName,
	"scopes":            keys.FieldScopes,
	"metadata":          keys.FieldMetadata,
	"rate_limit_policy": keys.FieldRatePolicy,
	"ip_restriction":    keys.FieldAllowedCIDRs,
}

// patch builds a partial update. With an update mask, exactly the named
// fields change (absent values clear them) and any other path is rejected.
// Without one, every populated field applies and read-only fields are ignored,
// as in Ory Talos.
func patch(paths []string, name string, scopes []string, md *structpb.Struct, rp *pb.RateLimitPolicy, ip *pb.IPRestriction) (keys.Patch, error) {
	a, err := attributes(name, scopes, md, rp, ip)
	if err != nil {
		return keys.Patch{}, err
	}
	p := keys.Patch{Attributes: a}
	if len(paths) == 0 {
		for f, present := range map[keys.FieldSet]bool{
			keys.FieldName: name != "", keys.FieldScopes: len(scopes) > 0, keys.FieldMetadata: md != nil,
			keys.FieldRatePolicy: rp != nil, keys.FieldAllowedCIDRs: ip != nil,
		} {
			if present {
				p.Set |= f
			}
		}
		return p, nil
	}
	for _, path := range paths {
		f, ok := maskFields[path]
		if !ok {
			return keys.Patch{}, credential.Invalid(fmt.Sprintf("invalid update_mask path %q: allowed are name, scopes, metadata, rate_limit_policy, ip_restriction", path))
		}
		p.Set |= f
	}
	return p, nil
}

// rotateInput applies presence semantics: an absent field inherits the old
// key's value, a present one overrides it. (Empty lists cannot be told from
// absent ones on the wire, so they inherit.)
func rotateInput(r *pb.AdminRotateIssuedApiKeyRequest) (keys.RotateInput, error) {
	a, err := attributes(r.GetName(), r.GetScopes(), r.GetMetadata(), r.GetRateLimitPolicy(), r.GetIpRestriction())
	if err != nil {
		return keys.RotateInput{}, err
	}
	in := keys.RotateInput{Patch: keys.Patch{Attributes: a}}
	if r.Name != nil {
		in.Set |= (keys.FieldName)
	}
	if len(r.GetScopes()) > 0 {
		in.Set |= (keys.FieldScopes)
	}
	if r.GetMetadata() != nil {
		in.Set |= (keys.FieldMetadata)
	}
	if r.GetRateLimitPolicy() != nil {
		in.Set |= (keys.FieldRatePolicy)
	}
	if r.GetIpRestriction() != nil {
		in.Set |= (keys.FieldAllowedCIDRs)
	}
	if in.Visibility, err = apiconv.VisibilityFromPB(r.GetVisibility()); err != nil {
		return in, err
	}
	if in.Grace, err = apiconv.ParseDuration(r.GetGracePeriod()); err != nil {
		return in, credential.Invalid("grace_period: " + err.Error())
	}
	return in, nil
}

func batchErrorCode(err error) pb.BatchCreateImportedApiKeysErrorCode {
	switch credential.KindOf(err) {
	case credential.ErrInvalidArgument:
		return pb.BatchCreateImportedApiKeysErrorCode_BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INVALID_ARGUMENT
	case credential.ErrConflict:
		return pb.BatchCreateImportedApiKeysErrorCode_BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS
	case credential.ErrFailedPrecondition:
		return pb.BatchCreateImportedApiKeysErrorCode_BATCH_CREATE_IMPORTED_API_KEYS_ERROR_FAILED_PRECONDITION
	case credential.ErrRateLimited:
		return pb.BatchCreateImportedApiKeysErrorCode_BATCH_CREATE_IMPORTED_API_KEYS_ERROR_RESOURCE_EXHAUSTED
	}
	return pb.BatchCreateImportedApiKeysErrorCode_BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INTERNAL
}

// batchImport answers 200 when at least one item succeeded; when all failed,
// it answers with the error of the most common failure, as Ory Talos does.
func (s *Server) batchImport(ctx context.Context, r *pb.BatchCreateImportedApiKeysRequest) (*pb.BatchCreateImportedApiKeysResponse, error) {
	const method = "AdminBatchCreateImportedApiKeys"
	ins := make([]keys.ImportInput, len(r.GetRequests()))
	convErr := make([]error, len(ins))
	for i, req := range r.GetRequests() {
		ins[i], convErr[i] = importInput(req)
		if convErr[i] != nil {
			ins[i] = keys.ImportInput{} // fails validation in the service, keeping indexes aligned
		}
	}
	outs, err := s.keys.BatchImport(ctx, tenant(ctx), ins)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	now := s.now()
	resp := &pb.BatchCreateImportedApiKeysResponse{Results: make([]*pb.BatchCreateImportedApiKeysResult, len(outs))}
	counts := map[error]int{}
	var dominant error
	for i, o := range outs {
		res := &pb.BatchCreateImportedApiKeysResult{Index: int32(i)}
		if convErr[i] != nil {
			o.Err = convErr[i]
		}
		if o.Err != nil {
			res.ErrorCode = batchErrorCode(o.Err)
			res.ErrorMessage = errcode.Describe(o.Err).Message
			resp.FailureCount++
			kind := credential.KindOf(o.Err)
			counts[kind]++
			if dominant == nil || counts[kind] > counts[credential.KindOf(dominant)] {
				dominant = o.Err
			}
		} else {
			res.ImportedApiKey = apiconv.ImportedToPB(&o.Key, now)
			resp.SuccessCount++
		}
		resp.Results[i] = res
	}
	if resp.SuccessCount == 0 && dominant != nil {
		return nil, s.toStatus(ctx, method, dominant)
	}
	return resp, nil
}

func (s *Server) GetJwks(ctx context.Context, _ *pb.GetJwksRequest) (*pb.GetJwksResponse, error) {
	set, err := s.keys.JWKS(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "GetJwks", err)
	}
	st, err := structpb.NewStruct(set)
	if err != nil {
		return nil, s.toStatus(ctx, "GetJwks", err)
	}
	return &pb.GetJwksResponse{Jwks: st}, nil
}
