package invalidation

import (
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// TestBackoff_CappedNearASecond: with the default options the delay before
// re-subscribing grows from 25–50ms and never exceeds 1s however many
// streams failed in a row (the old cap was 2s), drawn from [bound/2, bound]
// so that sidecars do not reconnect in step.
func TestBackoff_CappedNearASecond(t *testing.T) {
	t.Parallel()
	c, err := New(nopApplier{}, Options{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for attempt := range 64 {
		for range 50 {
			d := c.backoff(attempt)
			if d > time.Second || d < DefaultMinBackoff/2 {
				t.Fatalf("backoff(%d) = %v, want between %v and 1s", attempt, d, DefaultMinBackoff/2)
			}
			if attempt >= 5 && d < 500*time.Millisecond {
				t.Fatalf("backoff(%d) = %v: once capped, drawn from [0.5s, 1s]", attempt, d)
			}
		}
	}
}

type nopApplier struct{}

func (nopApplier) Invalidate(credential.Tenant, credential.KeyID, int64) {}
func (nopApplier) Advance(int64)                                         {}
func (nopApplier) Forget(int64)                                          {}
