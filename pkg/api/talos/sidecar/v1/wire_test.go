package sidecarv1_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/anypb"

	sidecarv1 "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
)

func TestInvalidationTypeURLIsTheMessage(t *testing.T) {
	a, err := anypb.New(&sidecarv1.Invalidation{})
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != sidecarv1.InvalidationTypeURL {
		t.Fatalf("type URL %q, want %q", a.GetTypeUrl(), sidecarv1.InvalidationTypeURL)
	}
}

func TestInvalidationNameRoundTrip(t *testing.T) {
	for _, c := range []struct{ tenant, id string }{{"00000000-0000-0000-0000-000000000000", "k1"}, {"t", "a/b"}} {
		tn, id, ok := sidecarv1.ParseInvalidationName(sidecarv1.InvalidationName(c.tenant, c.id))
		if !ok || tn != c.tenant || id != c.id {
			t.Errorf("%+v: got %q %q %v", c, tn, id, ok)
		}
	}
	for _, bad := range []string{sidecarv1.HeartbeatName, "", "/", "t/", "/k", "nokey"} {
		if _, _, ok := sidecarv1.ParseInvalidationName(bad); ok {
			t.Errorf("%q parsed as a key resource name", bad)
		}
	}
}
