package keys_test

import (
	"errors"
	"testing"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

// FuzzListPageToken feeds arbitrary page tokens to List: it must never panic
// and must answer ErrInvalidArgument for anything it did not issue.
func FuzzListPageToken(f *testing.F) {
	for _, seed := range []string{"", "AAAA", "not base64!", "eyJuIjoiYSJ9", string(make([]byte, 64))} {
		f.Add(seed)
	}
	ts := newTestService(f)
	f.Fuzz(func(t *testing.T, tok string) {
		_, _, err := ts.svc.List(t.Context(), credential.DefaultTenant, credential.KindIssued, keys.ListInput{PageToken: tok})
		if tok == "" {
			if err != nil {
				t.Fatalf("List without token: %v", err)
			}
			return
		}
		if !errors.Is(err, credential.ErrInvalidArgument) {
			t.Fatalf("List(%q) error = %v, want ErrInvalidArgument", tok, err)
		}
	})
}
