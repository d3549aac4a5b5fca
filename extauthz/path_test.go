package extauthz_test

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/talos-project/talos/extauthz"
)

// TestNormalizePath pins the normal form of a path and every refusal.
func TestNormalizePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string // want "" means refused
	}{
		{"/", "/"},
		{"/read/x", "/read/x"},
		{"/read/x?q=/../..#f", "/read/x"},
		{"/read/", "/read/"},
		{"/read/../admin", "/admin"},
		{"/read/./x", "/read/x"},
		{"/read/./../admin", "/admin"},
		{"/read/x/..", "/read/"},
		{"/read/.", "/read/"},
		{"/..", "/"},
		{"/../../a", "/a"},
		{"/read//x", "/read/x"},
		{"//read", "/read"},
		{"/read//../admin", "/admin"}, // slashes collapse first, as path.Clean does
		{"/read/%2e%2e/admin", "/admin"},
		{"/read/.%2E/admin", "/admin"},
		{"/read/%2E/x", "/read/x"},
		{"/%7Euser/%41%62", "/~user/Ab"},
		{"/caf%c3%a9", "/caf%C3%A9"},
		{"/a%3fb", "/a%3Fb"},
		{"/a%3bb", "/a%3Bb"},
		{"/a;b=c/d", "/a;b=c/d"},
		{"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="},
		{"/a..b/.c/..d", "/a..b/.c/..d"},

		// Not an absolute path.
		{"", ""}, {"*", ""}, {"read/x", ""}, {"http://h/read", ""}, {"?x", ""},
		// Bytes a path may not hold unencoded.
		{`/read\..\admin`, ""}, {"/read/x#/../../admin", ""}, {"/read/ x", ""}, {"/read/\x00", ""},
		{"/read/\t", ""}, {"/read/\xc3\xa9", ""}, {"/read/|", ""}, {"/a\x7f", ""}, {"/a[b]", ""},
		// Encoded separators.
		{"/read/..%2fadmin", ""}, {"/read/..%2Fadmin", ""}, {"/read/..%5cadmin", ""}, {"/read/%5C", ""},
		// Encoded controls.
		{"/read/%00", ""}, {"/read/x%00.json", ""}, {"/read/%0a", ""}, {"/read/%1F", ""}, {"/read/%7f", ""},
		// Invalid escapes.
		{"/read/%", ""}, {"/read/%4", ""}, {"/read/x%4", ""}, {"/read/%zz", ""}, {"/read/%4g", ""}, {"/read/%%41", ""},
		// Encoded bytes that are not UTF-8: overlong "." and "/" (a lenient
		// decoder's "..", "/"), surrogates, stray and truncated sequences.
		{"/read/%c0%ae%c0%ae/admin", ""}, {"/read/..%c0%afadmin", ""}, {"/read/%e0%80%ae%e0%80%ae/admin", ""},
		{"/read/%f0%80%80%ae", ""}, {"/read/%ed%a0%80", ""}, {"/read/%80", ""}, {"/read/caf%c3", ""}, {"/read/%ff", ""},
		{"/read/%c3%a9%c3", ""},
		// Double encoding.
		{"/read/%252e%252e/admin", ""}, {"/100%25", ""},
		// Segments some stacks read as dot or empty segments.
		{"/read/..;/admin", ""}, {"/read/..;x/admin", ""}, {"/read/.;x/y", ""}, {"/read/;x/../admin", ""},
		{"/read/..%3B/admin", ""}, {"/read/..%3b/admin", ""}, {"/read/%2e%2e%3b/admin", ""},
		{"/read/.../admin", ""}, {"/read/..%20/admin", ""}, {"/read/%20", ""}, {"/read/. ./x", ""},
	}
	for _, tt := range tests {
		got, err := extauthz.NormalizePath(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("NormalizePath(%q) = %q, want refused", tt.in, got)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("NormalizePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestPathWithin pins the path condition.
func TestPathWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		hold   []string
		fail   []string
	}{
		{prefix: "/read",
			hold: []string{"/read", "/read/", "/read/x", "/read/x?y=/../..", "/read/./x", "/read/a/../b", "/read//x",
				"/read/x/..", "/read/%78", "/read/x/%2e%2e", "/read/caf%c3%a9"},
			fail: []string{"/readme", "/rea", "/", "/admin", "/READ/x", "/%72ead/x", "/read/../admin", "/read/../read/x", "//read/x",
				"/./read/x", "/read;x/y", "/read/%2e%2e/admin", "/read/.%2e/admin", "/read/..%2fadmin", "/read/..%2Fadmin",
				"/read//../admin", "/read/./../admin", "/read/x/../../admin", "/read/..;/admin", "/read/;x/../admin",
				"/read/%252e%252e/admin", `/read\..\admin`, `/read/..\admin`, "/read/x#/../../admin", "/read/x%00",
				"/read/%", "/read/%zz", "/read/.../admin", "", "*", "read/x", "http://h/read/x"}},
		{prefix: "/read/",
			hold: []string{"/read/", "/read/x", "/read//", "/read/.", "/read/x/.."},
			fail: []string{"/read", "/read/..", "/read?x", "/readme"}},
		{prefix: "/",
			hold: []string{"/", "/x", "/read/../x", "/read/x/"},
			fail: []string{"/..", "/../x", "/read/../../x", "*", "", "/a%2Fb"}},
		{prefix: "/caf%C3%A9",
			hold: []string{"/caf%C3%A9/x"},
			fail: []string{"/caf%c3%a9/x"}},
		// Conditions that are not a normal path never hold.
		{prefix: "", fail: []string{"/", "/read"}},
		{prefix: "read", fail: []string{"/read", "read"}},
		{prefix: "/read?x", fail: []string{"/read", "/read?x"}},
		{prefix: "/read/../x", fail: []string{"/x", "/read/../x"}},
		{prefix: "/read//x", fail: []string{"/read/x", "/read//x"}},
		{prefix: "//read", fail: []string{"/read", "//read"}},
		{prefix: "/read/.", fail: []string{"/read/", "/read/."}},
		{prefix: "/a%2Fb", fail: []string{"/a%2Fb", "/a/b"}},
	}
	for _, tt := range tests {
		for _, p := range tt.hold {
			if !extauthz.PathWithin(p, tt.prefix) {
				t.Errorf("PathWithin(%q, %q) = false, want true", p, tt.prefix)
			}
		}
		for _, p := range tt.fail {
			if extauthz.PathWithin(p, tt.prefix) {
				t.Errorf("PathWithin(%q, %q) = true, want false", p, tt.prefix)
			}
		}
	}
}

// FuzzPath checks the path rules by their properties: the normal form is a
// normal absolute path, is its own normal form and is what Go's decoding and
// path.Clean make of the path; a path that is refused never holds; and a path
// that holds is under the prefix whether the app reads it raw, decoded or
// resolved.
func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"/read/x", "/read/../admin", "/read/%2e%2e/admin", "/read/..%2fadmin", "/read//../admin", "/read/./../admin",
		"/read/..;/admin", "//read/x", "/read/x?q=1", "/%41/%c3%a9", "/read/%252e", `/read\x`, "/read/x/..", "/",
	} {
		f.Add(s, "/read")
	}
	f.Add("/read/x", "/read/")
	f.Add("/a/b/c/../../d", "/a")
	f.Add("/x", "/")
	f.Fuzz(func(t *testing.T, target, prefix string) {
		norm, err := extauthz.NormalizePath(target)
		if err != nil {
			if norm != "" {
				t.Fatalf("refusal %q with output %q", err, norm)
			}
			// A path that is refused is never judged.
			for _, p := range []string{prefix, "/"} {
				if extauthz.PathWithin(target, p) || extauthz.ConditionsHold(map[string]string{"path": p}, &extauthz.Request{Path: target}) {
					t.Fatalf("refused path %q (%v) holds for %q", target, err, p)
				}
			}
			return
		}
		checkNormal(t, norm)
		if again, err := extauthz.NormalizePath(norm); err != nil || again != norm {
			t.Fatalf("NormalizePath(%q) = %q, %v; not idempotent on %q", norm, again, err, target)
		}
		rawPath, _, _ := strings.Cut(target, "?")
		decoded, derr := url.PathUnescape(rawPath)
		if derr != nil {
			t.Fatalf("Go cannot decode accepted path %q: %v", rawPath, derr)
		}
		normDecoded, _ := url.PathUnescape(norm)
		if c1, c2 := path.Clean(decoded), path.Clean(normDecoded); c1 != c2 {
			t.Fatalf("path %q: Go reads %q, the normal form %q reads %q", target, c1, norm, c2)
		}

		within := extauthz.PathWithin(target, prefix)
		if within != extauthz.ConditionsHold(map[string]string{"path": prefix}, &extauthz.Request{Path: target}) {
			t.Fatalf("PathWithin and the path condition disagree on %q, %q", target, prefix)
		}
		if !within {
			return
		}
		np, err := extauthz.NormalizePath(prefix)
		if err != nil {
			t.Fatalf("prefix %q holds but is refused: %v", prefix, err)
		}
		// Every reading of the path is under the prefix: its normal form,
		// the raw path, and Go's decoded and cleaned path.
		base := strings.TrimSuffix(prefix, "/")
		decodedBase, _ := url.PathUnescape(base)
		for _, r := range []struct{ name, p, base string }{
			{"normal form", norm, strings.TrimSuffix(np, "/")},
			{"raw path", rawPath, base},
			{"decoded path", decoded, decodedBase},
			{"cleaned path", path.Clean(decoded), decodedBase},
		} {
			if !under(r.p, r.base) {
				t.Fatalf("%q holds for %q, but its %s %q is not under %q", target, prefix, r.name, r.p, r.base)
			}
		}
	})
}

// under reports whether p is base or below it, on a segment boundary.
func under(p, base string) bool {
	return strings.HasPrefix(p, base) && (len(p) == len(base) || p[len(base)] == '/' || base == "")
}

// checkNormal asserts the shape of a normal path.
func checkNormal(t *testing.T, p string) {
	t.Helper()
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		t.Fatalf("normal form %q: not an absolute path without empty segments", p)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("normal form %q has a dot segment", p)
		}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) {
				t.Fatalf("normal form %q: truncated escape", p)
			}
			h := p[i+1 : i+3]
			if strings.ToUpper(h) != h {
				t.Fatalf("normal form %q: lower-case escape", p)
			}
			v, err := url.PathUnescape("%" + h)
			if err != nil || len(v) != 1 {
				t.Fatalf("normal form %q: bad escape %q", p, h)
			}
			b := v[0]
			if b < 0x20 || b == 0x7f || b == '/' || b == '\\' || b == '%' ||
				b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("-._~", b) >= 0 {
				t.Fatalf("normal form %q: escape %%%s should have been refused or decoded", p, h)
			}
			i += 2
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
		default:
			t.Fatalf("normal form %q: byte %#x", p, c)
		}
	}
}
