package credential_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/talos-project/talos/pkg/credential"
)

func TestIPAllowed(t *testing.T) {
	v4 := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	v4AsV6 := []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}
	v6 := []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}
	for _, c := range []struct {
		name  string
		cidrs []netip.Prefix
		addr  string
		want  bool
	}{
		{"unrestricted, unknown address", nil, "", true},
		{"unrestricted, any address", nil, "203.0.113.9", true},
		{"restricted, unknown address fails closed", v4, "", false},
		{"v4 in v4", v4, "10.1.2.3", true},
		{"v4 outside v4", v4, "11.1.2.3", false},
		{"mapped v6 in v4", v4, "::ffff:10.1.2.3", true},
		{"mapped v6 outside v4", v4, "::ffff:11.1.2.3", false},
		{"v4 in a mapped prefix", v4AsV6, "10.1.2.3", true},
		{"mapped v6 in a mapped prefix", v4AsV6, "::ffff:10.1.2.3", true},
		{"v4 outside a mapped prefix", v4AsV6, "11.1.2.3", false},
		{"v6 in v6", v6, "2001:db8::1", true},
		{"v6 with a zone in v6", v6, "2001:db8::1%eth0", true},
		{"v6 outside v6", v6, "2001:db9::1", false},
		{"v4 against v6 only", v6, "10.1.2.3", false},
		{"a v6 address is not its v4 tail", v4, "::10.1.2.3", false},
	} {
		var a netip.Addr
		if c.addr != "" {
			a = netip.MustParseAddr(c.addr)
		}
		if got := credential.IPAllowed(c.cidrs, a); got != c.want {
			t.Errorf("%s: IPAllowed(%v, %q) = %v, want %v", c.name, c.cidrs, c.addr, got, c.want)
		}
		k := credential.Key{AllowedCIDRs: c.cidrs}
		if got := k.AllowsIP(a); got != c.want {
			t.Errorf("%s: Key.AllowsIP = %v, want %v (one rule)", c.name, got, c.want)
		}
	}
}

func TestVerdictClassification(t *testing.T) {
	verdicts := []error{credential.ErrNotFound, credential.ErrExpired, credential.ErrRevoked, credential.ErrForbidden,
		credential.ErrRateLimited, credential.ErrMalformed, credential.ErrUnauthenticated,
		credential.ErrIPNotAllowed, credential.ErrKeyExpired, credential.ErrKeyFormat}
	outages := []error{credential.ErrUnavailable, credential.ErrDeadlineExceeded, errors.New("no sentinel")}
	neither := []error{credential.ErrInvalidArgument, credential.ErrConflict, credential.ErrFailedPrecondition,
		credential.ErrPermissionDenied, credential.ErrUnimplemented}
	for _, e := range verdicts {
		if !credential.IsVerdict(e) || credential.IsOutage(e) {
			t.Errorf("%v: IsVerdict=%v IsOutage=%v, want a verdict", e, credential.IsVerdict(e), credential.IsOutage(e))
		}
	}
	for _, e := range outages {
		if credential.IsVerdict(e) || !credential.IsOutage(e) {
			t.Errorf("%v: want an outage", e)
		}
	}
	for _, e := range neither {
		if credential.IsVerdict(e) || credential.IsOutage(e) {
			t.Errorf("%v: want neither verdict nor outage", e)
		}
	}
	// Every sentinel is classified on purpose: a new one must be added to
	// one of the lists above.
	seen := map[error]bool{}
	for _, l := range [][]error{verdicts, outages, neither} {
		for _, e := range l {
			seen[credential.KindOf(e)] = true
		}
	}
	for _, s := range credential.Sentinels() {
		if !seen[s] {
			t.Errorf("sentinel %v is not classified", s)
		}
	}
}

func TestForwardedAddr(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"203.0.113.7"}, "203.0.113.7"},
		{[]string{"10.0.0.1, 203.0.113.7"}, "203.0.113.7"},
		{[]string{"10.0.0.1,\t203.0.113.7 "}, "203.0.113.7"},
		{[]string{"10.0.0.1", "203.0.113.7"}, "203.0.113.7"},
		{[]string{"203.0.113.7", "garbage"}, ""},
		{[]string{"10.0.0.1, garbage"}, ""},
		{[]string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{[]string{"::ffff:10.0.0.1"}, "10.0.0.1"},
		{[]string{"10.0.0.1:80"}, "10.0.0.1"},
	} {
		got := credential.ForwardedAddr(c.values)
		var want netip.Addr
		if c.want != "" {
			want = netip.MustParseAddr(c.want)
		}
		if got != want {
			t.Errorf("ForwardedAddr(%q) = %v, want %v", c.values, got, want)
		}
	}
}

// FuzzForwardedAddr: nothing left of the last comma of the last value, and
// no earlier value, ever changes the answer, and it is never IPv4-mapped.
func FuzzForwardedAddr(f *testing.F) {
	f.Add("10.0.0.1", "1.2.3.4, 5.6.7.8")
	f.Add("x", "[::1]:80")
	f.Add("", "::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, earlier, last string) {
		got := credential.ForwardedAddr([]string{earlier, last})
		tail := last
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			tail = last[i+1:]
		}
		if alone := credential.ForwardedAddr([]string{"9.9.9.9, 8.8.8.8", tail}); alone != got {
			t.Fatalf("client-written entries changed the answer: %v vs %v", got, alone)
		}
		if got.Is4In6() {
			t.Fatalf("mapped address %v", got)
		}
	})
}
