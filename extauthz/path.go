package extauthz

import (
	"strings"
	"unicode/utf8"
)

// Paths are judged in one normal form, and only when they have one meaning.
//
// A "path" condition is judged against the path of the original request,
// which reaches the app as the client wrote it: nginx and Caddy forward the
// raw request target, and apps disagree on what "/read/../admin",
// "/read/%2e%2e/admin", "/read/..;/admin" or "//read" mean. So a path is
// read segment by segment (the query removed) and each segment is brought to
// its normal form: percent-encoded unreserved characters (RFC 3986, section
// 2.3: letters, digits, "-", ".", "_", "~") are decoded, every other escape
// is kept with upper-case hex digits, and empty segments (doubled slashes)
// are dropped. What cannot be read one way only is refused:
//
//   - a target that is not an absolute path ("*", "http://host/…", "");
//   - a byte a path may not hold unencoded (RFC 3986: controls, space,
//     non-ASCII, `"#<>[\]^`+"`"+`{|}`), so a raw backslash or fragment;
//   - an invalid or truncated escape ("%", "%4", "%zz");
//   - an encoded slash or backslash (%2F, %5C): one app splits on it,
//     another does not;
//   - an encoded control byte (%00-%1F, %7F), which truncates C strings;
//   - an encoded percent sign (%25): a stack that decodes twice reads
//     "%252e%252e" as "..";
//   - encoded bytes of a segment that are not valid UTF-8 once decoded:
//     overlong forms ("%c0%ae" is "." and "%c0%af" is "/" to a lenient
//     UTF-8 decoder, the old IIS and Tomcat traversals), surrogates, stray
//     continuation bytes; one stack reads them as Latin-1, another as
//     U+FFFD, another as ASCII;
//   - a segment that some stack reads as a dot segment or an empty one and
//     another does not: "..;x", ".;", ";x" (Tomcat and Spring strip ";"
//     parameters before resolving dots; "%3B" counts as ";"), and "...",
//     "..%20" and the like (Windows drops trailing dots and spaces).
//
// normalizePath gives the normal form of a whole path (dot segments resolved
// as RFC 3986 section 5.2.4 does, after the empty segments are dropped);
// pathWithin, the path condition, asks more of a path than that its normal
// form starts with the prefix (see there).

// pathError says why a path cannot be judged. The values are the reasons
// listed above.
type pathError string

func (e pathError) Error() string { return "path: " + string(e) }

const (
	errPathNotAbsolute = pathError("not an absolute path")
	errPathByte        = pathError("a byte a path may not hold unencoded")
	errPathEscape      = pathError("an invalid percent escape")
	errPathSeparator   = pathError("an encoded slash or backslash")
	errPathControl     = pathError("an encoded control byte")
	errPathPercent     = pathError("an encoded percent sign")
	errPathUTF8        = pathError("encoded bytes that are not valid UTF-8")
	errPathAmbiguous   = pathError("a segment read as a dot or empty segment by some stacks only")
)

// pathByte classes.
const (
	pathBad     = iota // refused unencoded
	pathKeep           // an unreserved character, sub-delim, ":" or "@"
	pathPercent        // "%"
)

var pathClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = pathKeep, pathKeep
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = pathKeep
	}
	for _, c := range "-._~!$&'()*+,;=:@" {
		t[c] = pathKeep
	}
	t['%'] = pathPercent
	return t
}()

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// segments reads the segments of an absolute path, each in normal form.
type segments struct {
	rest string
	done bool
}

// newSegments starts reading the path of target: up to its first "?".
func newSegments(target string) (segments, error) {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	if target == "" || target[0] != '/' {
		return segments{done: true}, errPathNotAbsolute
	}
	return segments{rest: target[1:]}, nil
}

// next returns the next segment in normal form (seg) and as written (raw):
// "" for an empty one (a doubled slash, or the end of a path that ends with
// "/"), "." and ".." for dot segments, encoded or not. ok is false past the
// last segment or on an error.
func (s *segments) next() (seg, raw string, ok bool, err error) {
	if s.done {
		return "", "", false, nil
	}
	raw, rest, more := strings.Cut(s.rest, "/")
	s.rest, s.done = rest, !more
	if seg, err = s.normal(raw); err != nil {
		s.done = true
		return "", "", false, err
	}
	return seg, raw, true, nil
}

func (s *segments) normal(raw string) (string, error) {
	plain := true
	for i := 0; i < len(raw); i++ {
		switch pathClass[raw[i]] {
		case pathBad:
			return "", errPathByte
		case pathPercent:
			plain = false
		}
	}
	seg := raw
	if !plain {
		b := make([]byte, 0, len(raw))
		high := false // an escape of a byte >= 0x80
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c != '%' {
				b = append(b, c)
				continue
			}
			if i+2 >= len(raw) {
				return "", errPathEscape
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return "", errPathEscape
			}
			v := hi<<4 | lo
			switch {
			case v == '/' || v == '\\':
				return "", errPathSeparator
			case v < 0x20 || v == 0x7f:
				return "", errPathControl
			case v == '%':
				return "", errPathPercent
			case unreserved(v):
				b = append(b, v)
			case v >= utf8.RuneSelf:
				high = true
				fallthrough
			default:
				const hex = "0123456789ABCDEF"
				b = append(b, '%', hex[v>>4], hex[v&0xf])
			}
			i += 2
		}
		if high && !utf8.Valid(decodedUTF8(b)) {
			return "", errPathUTF8
		}
		seg = string(b)
	}
	if ambiguousSegment(seg) {
		return "", errPathAmbiguous
	}
	return seg, nil
}

// decodedUTF8 returns the bytes of a normal segment with its escapes (all
// well formed, upper-case hex) decoded.
func decodedUTF8(seg []byte) []byte {
	out := make([]byte, 0, len(seg))
	for i := 0; i < len(seg); i++ {
		if seg[i] == '%' && i+2 < len(seg) {
			hi, _ := unhex(seg[i+1])
			lo, _ := unhex(seg[i+2])
			out = append(out, hi<<4|lo)
			i += 2
			continue
		}
		out = append(out, seg[i])
	}
	return out
}

// ambiguousSegment reports whether a normal segment is read as a dot
// segment or an empty one by some stacks and as a name by others: its part
// before the first ";" (or "%3B") is made of dots and spaces only, and it is
// not exactly "", "." or "..".
func ambiguousSegment(seg string) bool {
	if seg == "" || seg == "." || seg == ".." {
		return false
	}
	base := seg
	if i := strings.IndexByte(base, ';'); i >= 0 {
		base = base[:i]
	}
	if i := strings.Index(base, "%3B"); i >= 0 {
		base = base[:i]
	}
	for base != "" {
		switch {
		case base[0] == '.':
			base = base[1:]
		case strings.HasPrefix(base, "%20"):
			base = base[3:]
		default:
			return false
		}
	}
	return true
}

// normalizePath returns the normal form of the path of a request target:
// the query removed, each segment in normal form, empty segments dropped,
// then dot segments resolved ("." dropped, ".." removing the segment before
// it, never climbing above the root). It ends with "/" when the path does
// or when its last segment is a dot segment, like RFC 3986's
// remove_dot_segments. The result is an absolute path without empty or dot
// segments, and normalizePath(result) is result. An error says why the path
// has no single meaning.
func normalizePath(target string) (string, error) {
	it, err := newSegments(target)
	if err != nil {
		return "", err
	}
	out := make([]byte, 0, len(target))
	var ends []int // where each kept segment starts in out
	dir := false
	for {
		seg, _, ok, err := it.next()
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		switch seg {
		case "", ".":
			dir = true
		case "..":
			if n := len(ends); n > 0 {
				out = out[:ends[n-1]]
				ends = ends[:n-1]
			}
			dir = true
		default:
			ends = append(ends, len(out))
			out = append(out, '/')
			out = append(out, seg...)
			dir = false
		}
	}
	if len(out) == 0 || dir {
		out = append(out, '/')
	}
	return string(out), nil
}

// pathWithin reports whether the path of target stays inside prefix, the
// value of a "path" condition. prefix must itself be an absolute path of
// normal segments (no query, dot segments or doubled slashes; it may end
// with "/"). The path holds when
//
//   - it can be read one way only (see normalizePath's errors),
//   - it starts with the segments of prefix, byte for byte: no dot
//     segment, empty segment, escape or other spelling of them, so that an
//     app that routes on the raw path sees the same prefix as one that
//     decodes and resolves it,
//   - after them, no ".." ever climbs back above them (empty segments
//     ignored, so "/read//../admin" climbs out, as it does for an app that
//     collapses slashes first): every app, resolving dot segments or not,
//     sees a path under the prefix,
//   - and, when prefix ends with "/", something follows its last segment.
//
// So for prefix "/read", "/read", "/read/", "/read/x", "/read/./x" and
// "/read/a/../b" hold; "/readme", "/read/../admin", "/read/../read/x",
// "//read/x", "/./read/x", "/%72ead/x", "/read;x/y" and
// "/read/%2e%2e/admin" do not.
func pathWithin(target, prefix string) bool {
	if strings.IndexByte(prefix, '?') >= 0 {
		return false
	}
	want, err := newSegments(prefix)
	if err != nil {
		return false
	}
	var wantDir bool
	var k int // segments of prefix
	// The first segments of target must be those of prefix.
	it, err := newSegments(target)
	if err != nil {
		return false
	}
	for {
		w, wraw, ok, err := want.next()
		if err != nil {
			return false
		}
		if !ok {
			break
		}
		if w == "" {
			// Only the last segment of prefix may be empty: it ends with
			// "/" (or is "/").
			if !want.done {
				return false
			}
			wantDir = true
			break
		}
		if w == "." || w == ".." {
			return false
		}
		_, raw, ok, err := it.next()
		if err != nil || !ok || raw != wraw {
			return false
		}
		k++
	}
	depth := k
	dir := false
	for {
		seg, _, ok, err := it.next()
		if err != nil {
			return false
		}
		if !ok {
			break
		}
		switch seg {
		case "", ".":
			dir = true
		case "..":
			if depth == k {
				return false
			}
			depth--
			dir = true
		default:
			depth++
			dir = false
		}
	}
	return !wantDir || depth > k || dir
}
