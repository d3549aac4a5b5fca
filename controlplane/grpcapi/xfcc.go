package grpcapi

import (
	"strings"
	"unicode/utf8"
)

// maxXFCC bounds the x-forwarded-client-cert values Check reads, all of them
// together: past it the header proves nothing. Forward Subject, URI and DNS
// (Envoy's set_current_client_cert_details), not Cert and Chain, to stay
// well below it.
const maxXFCC = 16 << 10

// xfccIdentity parses the x-forwarded-client-cert values of a request, in
// order, as one header (values joined with commas, as HTTP combines repeated
// fields), and returns the identity of its last element.
func xfccIdentity(values []string) (identity, bool) {
	n := len(values) - 1
	for _, v := range values {
		n += len(v)
		if n > maxXFCC {
			return identity{}, false
		}
	}
	if len(values) == 0 {
		return identity{}, false
	}
	return parseXFCC(strings.Join(values, ","))
}

// parseXFCC parses an x-forwarded-client-cert header the way Envoy writes
// it, strictly, and returns the identity of its LAST element: the one the
// adjacent proxy appended for its own downstream connection.
//
// The header is a comma-separated list of elements (a space may follow a
// comma, where a proxy combined repeated header lines); an element is a
// semicolon-separated list of Key=Value pairs with the keys By, Hash, Cert,
// Chain, Subject, URI and DNS (exactly so spelled; By, URI and DNS may
// repeat, the others may not). A value is either bare, up to the next ';' or
// ',' and without '"', or double-quoted, where a backslash escapes the next
// character (\" does not end the value). A quoted value is kept as written,
// escapes included: a Subject is an RFC 2253 string, whose escapes the
// certificate's own string form (pkix.Name.String) has too.
//
// Anything else (an empty element or pair, an unknown or repeated key, an
// unterminated quote, a quote inside a bare value, a control character,
// invalid UTF-8, more than maxXFCC bytes) makes the whole header malformed:
// false, never a partial identity. Every element is checked, not only the
// last.
func parseXFCC(s string) (identity, bool) {
	if s == "" || len(s) > maxXFCC || !utf8.ValidString(s) {
		return identity{}, false
	}
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return identity{}, false
		}
	}
	var last identity
	for i := 0; ; i++ { // i is at the start of an element, past its comma
		for i < len(s) && s[i] == ' ' {
			i++
		}
		id, next, ok := parseXFCCElement(s, i)
		if !ok {
			return identity{}, false
		}
		last, i = id, next
		if i == len(s) {
			return last, true
		}
		// s[i] is the comma that ends the element.
	}
}

// The keys that may appear at most once in an element.
const (
	seenHash = 1 << iota
	seenCert
	seenChain
	seenSubject
)

// parseXFCCElement parses the element that starts at s[i]. It returns the
// element's identity and the index of the comma that ends it, or len(s).
func parseXFCCElement(s string, i int) (identity, int, bool) {
	var (
		id   identity
		seen uint8
	)
	for ; ; i++ { // i is at the start of a pair, past its semicolon
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ';' && s[i] != ',' && s[i] != '"' {
			i++
		}
		if i == len(s) || s[i] != '=' {
			return identity{}, 0, false
		}
		key := s[start:i]
		i++ // past '='
		var (
			value string
			ok    bool
		)
		if value, i, ok = xfccValue(s, i); !ok {
			return identity{}, 0, false
		}
		once := uint8(0)
		switch key {
		case "By": // the proxy's own identity: not the caller's
		case "Hash":
			once = seenHash
		case "Cert":
			once = seenCert
		case "Chain":
			once = seenChain
		case "Subject":
			once = seenSubject
			id.subject = value
		case "URI":
			if value != "" {
				id.uris = append(id.uris, value)
			}
		case "DNS":
			if value != "" {
				id.dnsNames = append(id.dnsNames, value)
			}
		default:
			return identity{}, 0, false
		}
		if seen&once != 0 {
			return identity{}, 0, false
		}
		seen |= once
		if i == len(s) || s[i] == ',' {
			return id, i, true
		}
		// s[i] is the semicolon that ends the pair.
	}
}

// xfccValue reads the value that starts at s[i]. It returns the value and
// the index just past it, which is len(s) or at a ';' or ','.
func xfccValue(s string, i int) (string, int, bool) {
	if i < len(s) && s[i] == '"' {
		start := i + 1
		for i = start; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++ // the escaped character, whatever it is
				continue
			case '"':
				value, end := s[start:i], i+1
				if end < len(s) && s[end] != ';' && s[end] != ',' {
					return "", 0, false
				}
				return value, end, true
			}
		}
		return "", 0, false // unterminated
	}
	start := i
	for i < len(s) && s[i] != ';' && s[i] != ',' {
		if s[i] == '"' {
			return "", 0, false
		}
		i++
	}
	return s[start:i], i, true
}
