package ratelimit_test

import (
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

func TestHeaderValues(t *testing.T) {
	if got := ratelimit.PolicyValue(credential.RatePolicy{Quota: 100, Window: time.Minute}); got != `"default";q=100;w=60` {
		t.Errorf("PolicyValue = %s", got)
	}
	if got := ratelimit.PolicyValue(credential.RatePolicy{Quota: 3, Window: 1500 * time.Millisecond}); got != `"default";q=3;w=2` {
		t.Errorf("PolicyValue(1.5s) = %s, want the window rounded up", got)
	}
	allowed := ratelimit.Decision{Allowed: true, Remaining: 42, ResetAfter: 16100 * time.Millisecond}
	if got := ratelimit.StateValue(allowed); got != `"default";r=42;t=17` {
		t.Errorf("StateValue(allow) = %s", got)
	}
	refused := ratelimit.Decision{Remaining: 0, RetryAfter: 10 * time.Millisecond, ResetAfter: time.Minute}
	if got := ratelimit.StateValue(refused); got != `"default";r=0;t=1` {
		t.Errorf("StateValue(refused) = %s, want t = retry-after, at least 1", got)
	}
	for d, want := range map[time.Duration]int64{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2} {
		if got := ratelimit.RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
	if a, b := ratelimit.KeyOf("t1", "k"), ratelimit.KeyOf("t2", "k"); a == b {
		t.Error("KeyOf does not separate tenants")
	}
}
