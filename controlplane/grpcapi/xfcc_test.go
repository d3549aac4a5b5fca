package grpcapi

import (
	"slices"
	"strings"
	"testing"
)

func TestParseXFCC(t *testing.T) {
	t.Parallel()
	const hash = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
	for _, tc := range []struct {
		in   string
		want identity
	}{
		{`By=http://frontend.lyft.com;Hash=` + hash + `;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
			identity{subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client", uris: []string{"http://testclient.lyft.com"}}},
		{`By=http://frontend.lyft.com;Hash=` + hash + `;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=` + hash + `;URI=http://frontend.lyft.com`,
			identity{uris: []string{"http://frontend.lyft.com"}}},
		{`By=http://frontend.lyft.com;Hash=` + hash + `;Subject="CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US";URI=;DNS=lyft.com;DNS=www.lyft.com`,
			identity{subject: "CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US", dnsNames: []string{"lyft.com", "www.lyft.com"}}},
		{`By=spiffe://a;By=spiffe://b;Hash=ab;Cert="-----BEGIN%20CERTIFICATE-----%0A";Chain="x";URI=spiffe://c/1;URI=spiffe://c/2`,
			identity{uris: []string{"spiffe://c/1", "spiffe://c/2"}}},
		// Escapes in a quoted value are kept as written (RFC 2253).
		{`Subject="CN=a\"b\\,O=x;y=z"`, identity{subject: `CN=a\"b\\,O=x;y=z`}},
		{`URI="spiffe://a/b"`, identity{uris: []string{"spiffe://a/b"}}},
		// A space after a comma, where a proxy joined header lines.
		{`URI=spiffe://a/1, URI=spiffe://a/2`, identity{uris: []string{"spiffe://a/2"}}},
		{`Hash=ab`, identity{}},
		{`Subject=""`, identity{}},
	} {
		got, ok := parseXFCC(tc.in)
		if !ok {
			t.Errorf("parseXFCC(%q): malformed", tc.in)
			continue
		}
		if got.subject != tc.want.subject || !slices.Equal(got.uris, tc.want.uris) || !slices.Equal(got.dnsNames, tc.want.dnsNames) {
			t.Errorf("parseXFCC(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{
		"", " ", ",", "URI=a,", ",URI=a", "URI=a,,URI=b", "URI=a;", ";URI=a", "URI=a;;DNS=b", "URI", "URI;DNS=a", "=a",
		"uri=a", "URI =a", "Foo=a", "SAN=a", "Subject=a;Subject=b", "Hash=a;Hash=b", "Cert=a;Cert=b", "Chain=a;Chain=b",
		`Subject="a`, `Subject="a\"`, `Subject="a"b`, `Subject="a" ;URI=b`, `URI=a"b`, `URI=a";DNS=b`, `Subject=a"`,
		"URI=a\x00b", "URI=a\tb", "URI=a\nb", "URI=a\x7fb", "URI=\xff", "URI=a,\tURI=b",
		"URI=a," + `Subject="unterminated`,
		strings.Repeat("DNS=a;", maxXFCC/6) + "URI=b",
	} {
		if id, ok := parseXFCC(in); ok {
			t.Errorf("parseXFCC(%q) = %+v, want malformed", in, id)
		}
	}
	// The bound covers every value together.
	if _, ok := xfccIdentity([]string{strings.Repeat("a", maxXFCC/2), "URI=" + strings.Repeat("b", maxXFCC/2)}); ok {
		t.Error("two values over the bound together were accepted")
	}
	if id, ok := xfccIdentity([]string{"URI=spiffe://a/1", "URI=spiffe://a/2"}); !ok || !slices.Equal(id.uris, []string{"spiffe://a/2"}) {
		t.Errorf("two values: %+v %v, want the last element of the second", id, ok)
	}
	if _, ok := xfccIdentity(nil); ok {
		t.Error("no header was an identity")
	}
}

// FuzzParseXFCC: the parser never panics, returns only parts of its input,
// and is strict as a whole: appending a well-formed element to a header
// leaves it malformed if it was, and makes that element the identity if it
// was not.
func FuzzParseXFCC(f *testing.F) {
	for _, s := range []string{
		`By=spiffe://cluster.local/ns/talos/sa/cp;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="";URI=spiffe://cluster.local/ns/ops/sa/deployer`,
		`By=http://frontend.lyft.com;Hash=ab;Subject="CN=Test Client,OU=Lyft";URI=;DNS=lyft.com;DNS=www.lyft.com`,
		`URI=a,URI=b`, `URI=a, URI=b`, `Subject="a\"b"`, `Subject="a\\"`, `Cert="x";Chain="y"`,
		`Subject="a`, `URI=a;;`, `URI=a,`, "URI=\xff", "", ",", `"`, `\`, "URI=a\x00",
	} {
		f.Add(s)
	}
	const tail = "By=spiffe://fuzz;Hash=00;URI=spiffe://fuzz/last"
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseXFCC(s)
		if again, ok2 := parseXFCC(s); ok2 != ok || again.subject != id.subject || !slices.Equal(again.uris, id.uris) {
			t.Fatalf("parseXFCC(%q) is not deterministic", s)
		}
		if ok {
			for _, v := range append(append([]string{id.subject}, id.uris...), id.dnsNames...) {
				if !strings.Contains(s, v) || strings.ContainsAny(v, "\x00\r\n") {
					t.Fatalf("parseXFCC(%q): value %q is not a clean part of the input", s, v)
				}
			}
		}
		if len(s)+1+len(tail) > maxXFCC {
			return
		}
		got, ok2 := parseXFCC(s + "," + tail)
		if ok2 != ok {
			t.Fatalf("parseXFCC(%q) ok=%v, but with an element appended ok=%v", s, ok, ok2)
		}
		if ok2 && (got.subject != "" || !slices.Equal(got.uris, []string{"spiffe://fuzz/last"}) || len(got.dnsNames) != 0) {
			t.Fatalf("parseXFCC(%q + tail) = %+v, want the tail's identity", s, got)
		}
	})
}
