package upstream

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
)

// FuzzVerdict feeds arbitrary VerifyResponse messages (protobuf wire bytes)
// to the sidecar's conversion of a control plane answer into a verdict. A
// broken or hostile control plane must not get an allow past it that the
// pipeline cannot judge: an accepted VALID names a key and a known
// credential type, with CIDRs and metadata that parse; anything else is a
// verdict of a known kind or ErrUnavailable with an empty result, never
// another error; and what is accepted converts back to the same answer.
func FuzzVerdict(f *testing.F) {
	full := credential.Result{
		Type: credential.TypeIssued, Tenant: credential.DefaultTenant, KeyID: "k1", ActorID: "a", Scopes: []string{"read"},
		Metadata: json.RawMessage(`{"plan":"pro"}`), Status: credential.StateActive, Visibility: credential.VisibilitySecret,
		ExpireTime:   time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
		RatePolicy:   &credential.RatePolicy{Quota: 100, Window: time.Minute, Unit: "requests"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Audiences:    []string{"svc"}, Issuer: "http://cp", Conditions: map[string]string{"path": "/r"},
	}
	for _, c := range []struct {
		res credential.Result
		err error
	}{
		{full, nil},
		{credential.Result{Type: credential.TypeJWT, KeyID: "k2"}, nil},
		{full, &credential.Error{Kind: credential.ErrRevoked, Reason: "API_KEY_REVOKED", Message: "Revoked."}},
		{credential.Result{}, &credential.Error{Kind: credential.ErrNotFound, Reason: "NOT_FOUND", Message: "Not found."}},
		{credential.Result{}, credential.ErrRateLimited},
	} {
		b, err := proto.Marshal(apiconv.SidecarResponse(c.res, c.err))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, r := range []*sidecarpb.VerifyResponse{
		{Outcome: sidecarpb.Outcome_OUTCOME_VALID, KeyId: "k"},            // no type
		{Outcome: sidecarpb.Outcome_OUTCOME_VALID, KeyId: "k", Type: 258}, // a type that does not fit
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x01})             // outcome VALID, nothing else
	f.Add([]byte{0x08, 0x01, 0x10, 0x82}) // VALID with a truncated varint
	c := &Client{log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r sidecarpb.VerifyResponse
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		res, err := c.verdict(&r)
		switch {
		case err == nil:
			if res.KeyID == "" {
				t.Fatalf("VALID without a key ID accepted: %v", &r)
			}
			if res.Type < credential.TypeIssued || res.Type > credential.TypeMacaroon || sidecarpb.CredentialType(res.Type) != r.GetType() {
				t.Fatalf("VALID with credential type %v accepted as %v: %v", r.GetType(), res.Type, &r)
			}
			for _, p := range res.AllowedCIDRs {
				if !p.IsValid() {
					t.Fatalf("invalid CIDR accepted: %v", p)
				}
			}
			if len(res.Metadata) > 0 && !json.Valid(res.Metadata) {
				t.Fatalf("metadata that is not JSON accepted: %q", res.Metadata)
			}
		case credential.IsVerdict(err):
			var ce *credential.Error
			if !errors.As(err, &ce) {
				t.Fatalf("verdict %v is not a *credential.Error", err)
			}
		case errors.Is(err, credential.ErrUnavailable):
			if !cmp.Equal(res, credential.Result{}, cmpopts.EquateEmpty()) {
				t.Fatalf("unreadable response with a result: %+v", res)
			}
			return
		default:
			t.Fatalf("neither a verdict nor ErrUnavailable: %v", err)
		}
		// What was accepted says the same once encoded again.
		back, err2 := apiconv.FromSidecarResponse(apiconv.SidecarResponse(res, err))
		if credential.KindOf(err2) != credential.KindOf(err) {
			t.Fatalf("re-encoded verdict %v became %v", err, err2)
		}
		if err == nil {
			if d := cmp.Diff(res, back, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Fatalf("re-encoded result differs (-first +second):\n%s", d)
			}
		}
	})
}
