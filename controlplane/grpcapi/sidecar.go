package grpcapi

import (
	"context"
	"time"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
)

// Sidecar implements talos.sidecar.v1.Verifier, the protocol sidecars use on
// a cache miss. It shares the Server's keys service, logger and metrics.
type Sidecar struct {
	sidecarpb.UnimplementedVerifierServer
	s *Server
}

var _ sidecarpb.VerifierServer = (*Sidecar)(nil)

// Sidecar returns the sidecar-protocol view of s.
func (s *Server) Sidecar() *Sidecar { return &Sidecar{s: s} }

func sidecarPresented(r *sidecarpb.VerifyRequest) credential.Presented {
	t := credential.Tenant(r.GetTenant())
	if t == "" {
		t = credential.DefaultTenant
	}
	return credential.Presented{
		Tenant: t, Credential: r.GetCredential(), ExpectedAudiences: r.GetExpectedAudiences(),
		DeferIPCheck: true,
	}
}

// Verify answers one credential; verdicts are responses, not errors.
func (x *Sidecar) Verify(ctx context.Context, r *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
	start := time.Now()
	res, err := x.s.keys.Verify(ctx, sidecarPresented(r))
	x.s.metrics.Observe(res.Type, err, time.Since(start))
	if err != nil && !credential.IsVerdict(err) {
		return nil, x.s.toStatus(ctx, "sidecar.Verify", err)
	}
	return apiconv.SidecarResponse(res, err), nil
}

// BatchVerify answers up to keys.MaxBatchVerify credentials of one tenant in
// request order.
func (x *Sidecar) BatchVerify(ctx context.Context, r *sidecarpb.BatchVerifyRequest) (*sidecarpb.BatchVerifyResponse, error) {
	ps := make([]credential.Presented, len(r.GetRequests()))
	for i, req := range r.GetRequests() {
		ps[i] = sidecarPresented(req)
	}
	start := time.Now()
	vs, err := x.s.keys.BatchVerify(ctx, ps)
	if err != nil {
		return nil, x.s.toStatus(ctx, "sidecar.BatchVerify", err)
	}
	per := time.Since(start) / time.Duration(len(vs))
	out := &sidecarpb.BatchVerifyResponse{Results: make([]*sidecarpb.VerifyResponse, len(vs))}
	for i, v := range vs {
		x.s.metrics.Observe(v.Result.Type, v.Err, per)
		if v.Err != nil && !credential.IsVerdict(v.Err) {
			if credential.KindOf(v.Err) == credential.ErrInvalidArgument {
				// An empty or oversized credential in a batch is a verdict
				// on that item only.
				v.Err = credential.ErrKeyFormat
			} else {
				return nil, x.s.toStatus(ctx, "sidecar.BatchVerify", v.Err)
			}
		}
		out.Results[i] = apiconv.SidecarResponse(v.Result, v.Err)
	}
	return out, nil
}

// GetTokenPolicy answers the issuers and clock skew derived tokens are
// verified under, so that sidecars verifying JWTs locally accept exactly what
// Verify accepts. It is sidecar surface (/talos.sidecar.v1.Verifier/), under
// the same authorization as Verify.
func (x *Sidecar) GetTokenPolicy(context.Context, *sidecarpb.GetTokenPolicyRequest) (*sidecarpb.TokenPolicy, error) {
	return apiconv.TokenPolicy(x.s.keys.TokenPolicy()), nil
}
