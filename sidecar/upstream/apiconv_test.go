package upstream_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
)

// TestSidecarResponse_RoundTrip checks pkg/apiconv's sidecar conversions,
// through the protobuf wire format, for every verdict: what the control
// plane encodes is what the sidecar decodes.
func TestSidecarResponse_RoundTrip(t *testing.T) {
	t.Parallel()
	for name, tc := range verdictCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := proto.Marshal(apiconv.SidecarResponse(tc.res, tc.err))
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var r sidecarpb.VerifyResponse
			if err := proto.Unmarshal(b, &r); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			res, err := apiconv.FromSidecarResponse(&r)
			checkVerdict(t, res, err, tc.res, tc.err)
		})
	}
}

// TestFromSidecarResponse_FailsClosed checks that a response the sidecar
// cannot read is ErrUnavailable with an empty result, never a verdict.
func TestFromSidecarResponse_FailsClosed(t *testing.T) {
	t.Parallel()
	valid := func(edit func(r *sidecarpb.VerifyResponse)) *sidecarpb.VerifyResponse {
		r := apiconv.SidecarResponse(keyResult(), nil)
		edit(r)
		return r
	}
	for name, r := range map[string]*sidecarpb.VerifyResponse{
		"nil":               nil,
		"unspecified":       valid(func(r *sidecarpb.VerifyResponse) { r.Outcome = sidecarpb.Outcome_OUTCOME_UNSPECIFIED }),
		"unknown outcome":   valid(func(r *sidecarpb.VerifyResponse) { r.Outcome = 42 }),
		"bad CIDR":          valid(func(r *sidecarpb.VerifyResponse) { r.AllowedCidrs = append(r.AllowedCidrs, "10.0.0.0/33") }),
		"metadata not JSON": valid(func(r *sidecarpb.VerifyResponse) { r.Metadata = []byte("{") }),
		"non-verdict error": apiconv.SidecarResponse(keyResult(), credential.ErrUnavailable),
		"invalid argument":  apiconv.SidecarResponse(credential.Result{}, credential.ErrInvalidArgument),
		"denial of bad CIDR": valid(func(r *sidecarpb.VerifyResponse) {
			r.Outcome = sidecarpb.Outcome_OUTCOME_REVOKED
			r.AllowedCidrs = []string{"x"}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := apiconv.FromSidecarResponse(r)
			if !errors.Is(err, credential.ErrUnavailable) || credential.IsVerdict(err) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
			if res.KeyID != "" {
				t.Errorf("result = %+v, want empty", res)
			}
		})
	}
}
