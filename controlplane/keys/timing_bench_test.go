package keys_test

import (
	"errors"
	"testing"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

// BenchmarkVerifyMissTiming is the pair behind finding 8e of issue 11: a
// well-formed v2 credential whose key ID exists but whose secret is wrong,
// against one whose key ID does not exist. Both answer NOT_FOUND; their
// ns/op must not tell them apart (compare the two sub-benchmarks of one run).
func BenchmarkVerifyMissTiming(b *testing.B) {
	ts := newTestService(b)
	const n = 1000
	known := make([]credential.Presented, n)
	unknown := make([]credential.Presented, n)
	for i := range n {
		in := issueInput("bench")
		in.Metadata = []byte(`{"plan":"pro"}`)
		_, tok := ts.mustIssue(b, tenantA, in)
		known[i] = credential.Presented{Tenant: tenantA, Credential: sameIDOtherSecret(b, tok)}
		iss, err := apikey.NewV2(testPrefix, nil)
		if err != nil {
			b.Fatal(err)
		}
		unknown[i] = credential.Presented{Tenant: tenantA, Credential: iss.Token}
	}
	for _, c := range []struct {
		name string
		ps   []credential.Presented
	}{{"known-id-wrong-secret", known}, {"unknown-id", unknown}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := ts.svc.Verify(ctx, c.ps[i%n]); !errors.Is(err, credential.ErrNotFound) {
					b.Fatalf("Verify = %v, want ErrNotFound", err)
				}
				i++
			}
		})
	}
}
