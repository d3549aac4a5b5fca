package apiconv_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
)

var policyEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func samplePolicy(t testing.TB) *token.Policy {
	t.Helper()
	p, err := token.NewPolicy("https://talos.example", []token.RetiredIssuer{
		{Issuer: "https://old.example", ExpiresAt: policyEpoch.Add(time.Hour)},
		{Issuer: "https://forever.example"},
	}, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func samePolicy(a, b *token.Policy) bool {
	return a.Issuer() == b.Issuer() && a.ClockSkew() == b.ClockSkew() &&
		slices.EqualFunc(a.Retired(), b.Retired(), func(x, y token.RetiredIssuer) bool {
			return x.Issuer == y.Issuer && x.ExpiresAt.Equal(y.ExpiresAt)
		})
}

func TestTokenPolicy_RoundTrip(t *testing.T) {
	t.Parallel()
	p := samplePolicy(t)
	got, err := apiconv.FromTokenPolicy(apiconv.TokenPolicy(p))
	if err != nil {
		t.Fatal(err)
	}
	if !samePolicy(p, got) {
		t.Errorf("round trip: %v %v %v", got.Issuer(), got.ClockSkew(), got.Retired())
	}
	if w := apiconv.TokenPolicy(p); w.RetiredIssuers[1].ExpireTime != nil {
		t.Error("an issuer retired forever was sent with an expiry")
	}
}

func TestFromTokenPolicy_Invalid(t *testing.T) {
	t.Parallel()
	valid := func() *sidecarpb.TokenPolicy { return apiconv.TokenPolicy(samplePolicy(t)) }
	tests := map[string]func(*sidecarpb.TokenPolicy){
		"no issuer":            func(w *sidecarpb.TokenPolicy) { w.Issuer = "" },
		"no clock skew":        func(w *sidecarpb.TokenPolicy) { w.ClockSkew = nil },
		"negative clock skew":  func(w *sidecarpb.TokenPolicy) { w.ClockSkew = durationpb.New(-time.Second) },
		"huge clock skew":      func(w *sidecarpb.TokenPolicy) { w.ClockSkew = &durationpb.Duration{Seconds: 315576000000} },
		"invalid clock skew":   func(w *sidecarpb.TokenPolicy) { w.ClockSkew = &durationpb.Duration{Seconds: 1, Nanos: -1} },
		"empty retired issuer": func(w *sidecarpb.TokenPolicy) { w.RetiredIssuers[0].Issuer = "" },
		"retired is current":   func(w *sidecarpb.TokenPolicy) { w.RetiredIssuers[0].Issuer = w.Issuer },
		"invalid expire_time":  func(w *sidecarpb.TokenPolicy) { w.RetiredIssuers[0].ExpireTime = &timestamppb.Timestamp{Nanos: -1} },
		"year-one expire_time": func(w *sidecarpb.TokenPolicy) { w.RetiredIssuers[0].ExpireTime = timestamppb.New(time.Time{}) },
		"too many retired ones": func(w *sidecarpb.TokenPolicy) {
			w.RetiredIssuers = make([]*sidecarpb.RetiredIssuer, apiconv.MaxRetiredIssuers+1)
		},
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			w := valid()
			edit(w)
			if _, err := apiconv.FromTokenPolicy(w); !errors.Is(err, credential.ErrInvalidArgument) {
				t.Errorf("err = %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// FuzzFromTokenPolicy: the sidecar's decoder of the control plane's token
// policy never panics, fails only with ErrInvalidArgument, and whatever it
// accepts is a valid policy (issuer set, skew within bounds) that survives
// an encode/decode round trip unchanged.
func FuzzFromTokenPolicy(f *testing.F) {
	for _, w := range []*sidecarpb.TokenPolicy{
		apiconv.TokenPolicy(samplePolicy(f)),
		{Issuer: "https://talos.example", ClockSkew: durationpb.New(0)},
		{Issuer: "https://talos.example"},
		{Issuer: "https://talos.example", ClockSkew: durationpb.New(-time.Second)},
		{Issuer: "https://a", ClockSkew: durationpb.New(time.Minute), RetiredIssuers: []*sidecarpb.RetiredIssuer{{Issuer: "https://a"}}},
		{},
	} {
		b, err := proto.Marshal(w)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var w sidecarpb.TokenPolicy
		if proto.Unmarshal(b, &w) != nil {
			return
		}
		p, err := apiconv.FromTokenPolicy(&w)
		if err != nil {
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			return
		}
		if p.Issuer() == "" || p.ClockSkew() < 0 || p.ClockSkew() > token.MaxClockSkew {
			t.Fatalf("accepted an invalid policy: %q %v", p.Issuer(), p.ClockSkew())
		}
		if !p.Accepts(p.Issuer(), time.Now()) {
			t.Fatal("the current issuer is not accepted")
		}
		again, err := apiconv.FromTokenPolicy(apiconv.TokenPolicy(p))
		if err != nil || !samePolicy(p, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
