package keys

import (
	"context"
	"fmt"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// RateLimitOptions configure the enforcement of keys' rate-limit policies on
// the public verify API (VerifyPublic, BatchVerifyPublic). Verify and
// BatchVerify, which the sidecar protocol calls, never count: the sidecar
// enforces the policy itself, so no request is counted twice.
type RateLimitOptions struct {
	// Enabled is asked on every request (rate_limit.enabled is hot); nil or
	// false counts nothing, but a key's policy is still reported.
	Enabled func() bool
	// FailClosed answers a verification the limiter could not decide on
	// with ErrUnavailable; false (Talos's behaviour) lets it through
	// without a rate-limit state.
	FailClosed bool
}

// RateObserver records one limiter call: its result ("allowed", "limited"
// or "error") and how long the backend took.
type RateObserver func(result string, took time.Duration)

// RateState is the rate-limit side of a public verification.
type RateState struct {
	// Policy is the key's policy; nil when it has none (never limited).
	Policy *credential.RatePolicy
	// Counted reports that the limiter decided: Decision is meaningful.
	// False when enforcement is off, the key has no policy, the
	// verification failed before counting, or the limiter failed open.
	Counted  bool
	Decision ratelimit.Decision
	// At is when the decision was made, the origin of ResetAfter.
	At time.Time
}

// ResetTime is when the key's budget is full again.
func (r RateState) ResetTime() time.Time { return r.At.Add(r.Decision.ResetAfter) }

// errRateLimited is the verdict of a request over its key's policy.
func errRateLimited(retry time.Duration) error {
	return &credential.Error{Kind: credential.ErrRateLimited, Reason: "RATE_LIMITED", Message: "rate limit exceeded", RetryAfter: retry}
}

// VerifyPublic is Verify for the public verify API: after every other check
// passed (state, expiry, client address), a key with a rate-limit policy
// spends one unit of it while enforcement is enabled, and one over budget
// gets ErrRateLimited (with RetryAfter). An invalid key spends nothing.
func (s *Service) VerifyPublic(ctx context.Context, p credential.Presented) (credential.Result, RateState, error) {
	res, err := s.Verify(ctx, p)
	if err != nil {
		return res, RateState{Policy: res.RatePolicy}, err
	}
	rs, err := s.count(ctx, p.Tenant, &res)
	return res, rs, err
}

// BatchVerifyPublic is BatchVerify with VerifyPublic's counting, item by
// item in request order; states[i] belongs to the i-th verdict. A limiter
// failure with RateLimitOptions.FailClosed fails the item with
// ErrUnavailable.
func (s *Service) BatchVerifyPublic(ctx context.Context, ps []credential.Presented) ([]credential.Verdict, []RateState, error) {
	vs, err := s.BatchVerify(ctx, ps)
	if err != nil {
		return nil, nil, err
	}
	states := make([]RateState, len(vs))
	for i := range vs {
		states[i].Policy = vs[i].Result.RatePolicy
		if vs[i].Err != nil {
			continue
		}
		states[i], vs[i].Err = s.count(ctx, ps[i].Tenant, &vs[i].Result)
	}
	return vs, states, nil
}

// count charges one unit of res's policy, when there is one and enforcement
// is on.
func (s *Service) count(ctx context.Context, tenant credential.Tenant, res *credential.Result) (RateState, error) {
	rs := RateState{Policy: res.RatePolicy}
	if rs.Policy == nil || s.limiter == nil || s.rlOpts.Enabled == nil || !s.rlOpts.Enabled() {
		return rs, nil
	}
	start := time.Now()
	d, err := s.limiter.Allow(ctx, ratelimit.KeyOf(tenant, res.KeyID), *rs.Policy, 1)
	took := time.Since(start)
	if err != nil {
		s.observe("error", took)
		if s.rlOpts.FailClosed {
			return rs, fmt.Errorf("rate limiter: %w: %w", credential.ErrUnavailable, err)
		}
		return rs, nil
	}
	rs.Counted, rs.Decision, rs.At = true, d, s.now()
	if !d.Allowed {
		s.observe("limited", took)
		return rs, errRateLimited(d.RetryAfter)
	}
	s.observe("allowed", took)
	return rs, nil
}

func (s *Service) observe(result string, took time.Duration) {
	if s.onRate != nil {
		s.onRate(result, took)
	}
}
