package errcode_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

func TestEverySentinelHasARow(t *testing.T) {
	t.Parallel()
	rows := errcode.Rows()
	for _, s := range credential.Sentinels() {
		n := 0
		for _, r := range rows {
			if r.Sentinel == s {
				n++
			}
		}
		if n != 1 {
			t.Errorf("sentinel %q has %d rows, want 1", s, n)
		}
	}
	if len(rows) != len(credential.Sentinels()) {
		t.Errorf("table has %d rows for %d sentinels", len(rows), len(credential.Sentinels()))
	}
}

func TestLookup_Wrapped(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("get key k1: %w", credential.ErrNotFound)
	if got := errcode.Lookup(err).HTTP; got != http.StatusNotFound {
		t.Errorf("HTTP = %d, want 404", got)
	}
	if got := errcode.Lookup(errors.New("boom")); got.GRPC != codes.Internal || got.HTTP != 500 {
		t.Errorf("unknown error row = %+v, want Internal", got)
	}
}

func TestDescribe_PublicDetailsOnlyFromCredentialError(t *testing.T) {
	t.Parallel()
	ce := &credential.Error{Kind: credential.ErrNotFound, Reason: "API_KEY_NOT_FOUND", Message: "API key not found", Metadata: map[string]string{"key_id": "k"}}
	p := errcode.Describe(fmt.Errorf("wrap: %w", ce))
	if p.Reason != "API_KEY_NOT_FOUND" || p.Message != "API key not found" || p.Metadata["key_id"] != "k" {
		t.Errorf("Describe = %+v", p)
	}
	p = errcode.Describe(fmt.Errorf("query failed for secret sk_live_x: %w", credential.ErrUnavailable))
	if p.Message != "The service is temporarily unavailable." {
		t.Errorf("internal message leaked: %q", p.Message)
	}
}

func TestGRPCRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range errcode.Rows() {
		back := errcode.FromGRPC(r.GRPC)
		if errcode.Lookup(back).GRPC != r.GRPC {
			t.Errorf("%v: FromGRPC(%v) = %v, which maps to %v", r.Sentinel, r.GRPC, back, errcode.Lookup(back).GRPC)
		}
		if got := errcode.HTTPFromGRPC(r.GRPC); got != r.HTTP {
			t.Errorf("%v: HTTPFromGRPC(%v) = %d, want %d", r.Sentinel, r.GRPC, got, r.HTTP)
		}
	}
	if errcode.FromGRPC(codes.Unknown) != credential.ErrUnavailable {
		t.Error("an unknown code must fail closed as ErrUnavailable")
	}
}

func TestStatusName(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.InvalidArgument: "INVALID_ARGUMENT", codes.NotFound: "NOT_FOUND",
		codes.Unauthenticated: "UNAUTHENTICATED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.Code(99): "INTERNAL",
	} {
		if got := errcode.StatusName(c); got != want {
			t.Errorf("StatusName(%v) = %q, want %q", c, got, want)
		}
	}
}
