package upstream

import (
	"context"
	"encoding/json"
	"fmt"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

// maxBatch is the most credentials the control plane takes in one
// BatchVerify call.
const maxBatch = 1000

// errBadResponse is returned for a response that does not fit its request.
var errBadResponse = fmt.Errorf("upstream: the control plane sent a response this sidecar cannot read: %w", credential.ErrUnavailable)

func request(p credential.Presented) *sidecarpb.VerifyRequest {
	// ClientIP is not sent: the control plane answers with the key's
	// allowed CIDRs and the sidecar checks them, so that the verdict can be
	// cached for every client address.
	return &sidecarpb.VerifyRequest{
		Tenant:            string(p.Tenant),
		Credential:        p.Credential,
		ExpectedAudiences: p.ExpectedAudiences,
	}
}

// Verify asks the control plane for a verdict on p. A nil error means the
// credential is valid. A verdict against it is a *credential.Error wrapping
// ErrMalformed, ErrNotFound, ErrExpired, ErrRevoked, ErrForbidden,
// ErrRateLimited or ErrUnauthenticated, with the control plane's public
// reason and message, and the Result filled as far as verification got.
// When no verdict could be had the error wraps ErrUnavailable (control
// plane unreachable, token rejected, unreadable response, context
// cancelled), ErrDeadlineExceeded (the caller's deadline or the last
// attempt's Timeout passed) or ErrInvalidArgument (the control plane refused
// the request, e.g. an empty or oversized credential); the Result is then
// empty. p.ClientIP, NoCache and NoStore are not sent.
func (c *Client) Verify(ctx context.Context, p credential.Presented) (credential.Result, error) {
	req := request(p)
	var resp *sidecarpb.VerifyResponse
	err := c.call(ctx, "Verify", func(ctx context.Context) (err error) {
		resp, err = c.verifier.Verify(ctx, req)
		return err
	})
	if err != nil {
		return credential.Result{}, err
	}
	return c.verdict(resp)
}

func (c *Client) verdict(r *sidecarpb.VerifyResponse) (credential.Result, error) {
	res, err := apiconv.FromSidecarResponse(r)
	if err != nil && !credential.IsVerdict(err) {
		c.log.Error("the control plane sent a verify response this sidecar cannot read", "outcome", r.GetOutcome().String())
	}
	return res, err
}

// BatchVerify verifies ps and answers one Verdict per credential, in the
// order of ps; each Verdict holds what Verify would have returned. Batches
// over 1000 go out as several calls, one after the other. The error is for
// the batch as a whole (see Verify for the kinds): then no verdicts are
// returned, even if some calls succeeded. An empty ps makes no call. The
// returned slice is the caller's.
func (c *Client) BatchVerify(ctx context.Context, ps []credential.Presented) ([]credential.Verdict, error) {
	out := make([]credential.Verdict, 0, len(ps))
	for start := 0; start < len(ps); start += maxBatch {
		chunk := ps[start:min(start+maxBatch, len(ps))]
		req := &sidecarpb.BatchVerifyRequest{Requests: make([]*sidecarpb.VerifyRequest, len(chunk))}
		for i, p := range chunk {
			req.Requests[i] = request(p)
		}
		var resp *sidecarpb.BatchVerifyResponse
		err := c.call(ctx, "BatchVerify", func(ctx context.Context) (err error) {
			resp, err = c.verifier.BatchVerify(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		if got := len(resp.GetResults()); got != len(chunk) {
			c.log.Error("the control plane answered a batch with the wrong number of results", "sent", len(chunk), "received", got)
			return nil, errBadResponse
		}
		for _, r := range resp.GetResults() {
			res, err := c.verdict(r)
			out = append(out, credential.Verdict{Result: res, Err: err})
		}
	}
	return out, nil
}

// JWKS returns the control plane's public JSON Web Key Set ({"keys":[…]},
// RFC 7517) as compact JSON with sorted members, ready for
// token.ParsePublicJWKS. Errors are those of Verify; a response without a
// key set is ErrUnavailable.
func (c *Client) JWKS(ctx context.Context) ([]byte, error) {
	var resp *pb.GetJwksResponse
	err := c.call(ctx, "GetJwks", func(ctx context.Context) (err error) {
		resp, err = c.derived.GetJwks(ctx, &pb.GetJwksRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	jwks := resp.GetJwks()
	if jwks == nil {
		c.log.Error("the control plane sent no JWKS")
		return nil, errBadResponse
	}
	b, err := json.Marshal(jwks.AsMap())
	if err != nil {
		c.log.Error("the control plane sent a JWKS that is not JSON", "error", err)
		return nil, errBadResponse
	}
	return b, nil
}

// TokenPolicy returns the control plane's token policy (the issuers and the
// clock skew derived tokens are verified under), decoded and validated.
// Errors are those of Verify; a response this sidecar cannot use (no issuer,
// a skew out of bounds, …) is ErrUnavailable, and a control plane too old to
// serve GetTokenPolicy answers ErrUnimplemented.
func (c *Client) TokenPolicy(ctx context.Context) (*token.Policy, error) {
	var resp *sidecarpb.TokenPolicy
	err := c.call(ctx, "GetTokenPolicy", func(ctx context.Context) (err error) {
		resp, err = c.verifier.GetTokenPolicy(ctx, &sidecarpb.GetTokenPolicyRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	p, err := apiconv.FromTokenPolicy(resp)
	if err != nil {
		c.log.Error("the control plane sent a token policy this sidecar cannot use", "error", err)
		return nil, errBadResponse
	}
	return p, nil
}
