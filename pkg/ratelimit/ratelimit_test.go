package ratelimit_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// tenPerMinute is a burst of 10, then one every 6s.
var tenPerMinute = credential.RatePolicy{Quota: 10, Window: time.Minute}

func TestGCRA(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		tat     time.Time // stored state; zero: none
		at      time.Duration
		cost    int64
		wantTAT time.Time
		want    ratelimit.Decision
	}{
		{"fresh key", time.Time{}, 0, 1, t0.Add(6 * s),
			ratelimit.Decision{Allowed: true, Remaining: 9, ResetAfter: 6 * s}},
		{"stale state counts as fresh", t0.Add(-time.Hour), 0, 1, t0.Add(6 * s),
			ratelimit.Decision{Allowed: true, Remaining: 9, ResetAfter: 6 * s}},
		{"last unit of the burst", t0.Add(54 * s), 0, 1, t0.Add(60 * s),
			ratelimit.Decision{Allowed: true, Remaining: 0, ResetAfter: 60 * s}},
		{"burst spent: refused until one interval passes", t0.Add(60 * s), 0, 1, t0.Add(60 * s),
			ratelimit.Decision{Remaining: 0, RetryAfter: 6 * s, ResetAfter: 60 * s}},
		{"partly refilled", t0.Add(60 * s), 4 * s, 1, t0.Add(60 * s),
			ratelimit.Decision{Remaining: 0, RetryAfter: 2 * s, ResetAfter: 56 * s}},
		{"one interval later", t0.Add(60 * s), 6 * s, 1, t0.Add(66 * s),
			ratelimit.Decision{Allowed: true, Remaining: 0, ResetAfter: 60 * s}},
		{"cost 3 of fresh", time.Time{}, 0, 3, t0.Add(18 * s),
			ratelimit.Decision{Allowed: true, Remaining: 7, ResetAfter: 18 * s}},
		{"cost 3 with 2 left is refused whole", t0.Add(48 * s), 0, 3, t0.Add(48 * s),
			ratelimit.Decision{Remaining: 2, RetryAfter: 6 * s, ResetAfter: 48 * s}},
		{"cost = quota of fresh", time.Time{}, 0, 10, t0.Add(60 * s),
			ratelimit.Decision{Allowed: true, Remaining: 0, ResetAfter: 60 * s}},
		{"peek changes nothing", t0.Add(30 * s), 0, 0, t0.Add(30 * s),
			ratelimit.Decision{Allowed: true, Remaining: 5, ResetAfter: 30 * s}},
		{"peek when spent", t0.Add(60 * s), 0, 0, t0.Add(60 * s),
			ratelimit.Decision{Allowed: true, Remaining: 0, ResetAfter: 60 * s}},
		{"refund gives one back", t0.Add(60 * s), 0, -1, t0.Add(54 * s),
			ratelimit.Decision{Allowed: true, Remaining: 1, ResetAfter: 54 * s}},
		{"refund never beyond a full budget", t0.Add(3 * s), 0, -1, t0,
			ratelimit.Decision{Allowed: true, Remaining: 10, ResetAfter: 0}},
		{"refund of a fresh key", time.Time{}, 0, -1, t0,
			ratelimit.Decision{Allowed: true, Remaining: 10, ResetAfter: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tat, d := ratelimit.GCRA(tt.tat, t0.Add(tt.at), tenPerMinute, tt.cost)
			if !tat.Equal(tt.wantTAT) {
				t.Errorf("TAT = %v, want %v", tat.Sub(t0), tt.wantTAT.Sub(t0))
			}
			if d != tt.want {
				t.Errorf("decision = %+v, want %+v", d, tt.want)
			}
		})
	}
}

// TestGCRASustained: after the burst, exactly one request per interval passes
// however often the caller tries.
func TestGCRASustained(t *testing.T) {
	var tat time.Time
	allowed := 0
	for ms := 0; ms < 600_000; ms += 100 { // 10 minutes, 10 tries a second
		var d ratelimit.Decision
		tat, d = ratelimit.GCRA(tat, t0.Add(time.Duration(ms)*time.Millisecond), tenPerMinute, 1)
		if d.Allowed {
			allowed++
		} else if d.RetryAfter <= 0 || d.RetryAfter > 6*time.Second {
			t.Fatalf("at %dms: refused with RetryAfter %v", ms, d.RetryAfter)
		}
	}
	if want := 10 + 99; allowed != want { // burst, then one per 6s for 594s (t=6s..594s)
		t.Errorf("allowed %d in 10 minutes, want %d", allowed, want)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		p    credential.RatePolicy
		cost int64
		ok   bool
	}{
		{tenPerMinute, 1, true},
		{tenPerMinute, 10, true},
		{tenPerMinute, -5, true},
		{tenPerMinute, 11, false},
		{credential.RatePolicy{Quota: 0, Window: time.Minute}, 1, false},
		{credential.RatePolicy{Quota: 1, Window: 0}, 1, false},
		{credential.RatePolicy{Quota: 100, Window: 50}, 1, false},
	}
	for _, tt := range tests {
		err := ratelimit.Check(tt.p, tt.cost)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ratelimit.ErrInvalidPolicy)) {
			t.Errorf("Check(%+v, %d) = %v, want ok=%v", tt.p, tt.cost, err, tt.ok)
		}
	}
}

func TestAddrKey(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	}
	for _, tt := range tests {
		if got := ratelimit.AddrKey(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("AddrKey(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if got := ratelimit.AddrKey(netip.Addr{}); got != "unknown" {
		t.Errorf("AddrKey(zero) = %q, want unknown", got)
	}
}

func TestNetworkKey(t *testing.T) {
	for addr, want := range map[string]string{
		"2001:db8:7:ff::1":     "2001:db8:7::/48",
		"2001:db8:7:0:1::9%e0": "2001:db8:7::/48",
		"192.0.2.1":            "",
		"::ffff:192.0.2.1":     "",
	} {
		if got := ratelimit.NetworkKey(netip.MustParseAddr(addr)); got != want {
			t.Errorf("NetworkKey(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := ratelimit.NetworkKey(netip.Addr{}); got != "" {
		t.Errorf("NetworkKey(unknown) = %q, want none", got)
	}
}
