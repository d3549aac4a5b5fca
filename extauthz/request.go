package extauthz

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/talos-project/talos/pkg/credential"
)

// Context extensions (gRPC) and headers (HTTP mode) that carry a route's
// requirements. The proxy configuration sets them, never the client.
const (
	ExtensionScopes    = "talos.scopes"
	ExtensionTenant    = "talos.tenant"
	ExtensionAudiences = "talos.audiences"
	// ExtensionCost is the units a check spends of its key's rate limit: a
	// decimal integer >= 0 (0 meters without spending). Absent: 1.
	ExtensionCost = "talos.cost"

	HeaderScopes    = "X-Talos-Scopes"
	HeaderTenant    = "X-Talos-Tenant"
	HeaderAudiences = "X-Talos-Audiences"
)

// Request is the transport-free facts of one check: what FromCheckRequest
// and FromHTTP extract, and all the decision looks at. The zero value is a
// request without a credential.
type Request struct {
	// Credential is the presented credential, "" when none was found.
	Credential string
	// CredentialHeader is the lowercase name of the header Credential came
	// from (the first, when several carry it).
	CredentialHeader string
	// Problem is non-nil when the request carries a credential that cannot
	// be used: several different values (in two credential headers, in
	// repeated headers, or in a comma-separated list, which is how proxies
	// merge repeats, so a credential never contains a comma), more than
	// credential.MaxCredentialBytes, or
	// bytes outside printable ASCII. It wraps credential.ErrMalformed and
	// says nothing about the credential itself. The check is denied without
	// asking the Authorizer.
	Problem error
	// ClientIP is the client address; the zero Addr means unknown, which
	// fails any IP restriction of the key closed.
	ClientIP netip.Addr
	// Method, Host and Path describe the original request (Path includes the
	// query string); they are informational.
	Method, Host, Path string
	// Tenant is the tenant the credential is checked in.
	Tenant credential.Tenant
	// RequiredScopes must all be held by the credential.
	RequiredScopes []string
	// Audiences are the audiences a derived token may be bound to.
	Audiences []string
	// Cost is the units the check spends of the key's rate limit (see
	// ExtensionCost and Options.CostHeader): 1 unless the route says
	// otherwise; 0 meters without spending.
	Cost int64
	// CostInvalid: the route's cost is not an integer >= 0. With rate
	// limiting on, the check is undecided (503) whatever the credential: a
	// misconfigured route never allows.
	CostInvalid bool
}

func costOf(v string) (int64, bool) {
	c, ok := parseCost(v)
	return c, !ok
}

// parseCost reads a route's cost: "" is 1; otherwise a decimal integer
// >= 0 of at most 18 digits, nothing else (no sign, no spaces).
func parseCost(v string) (cost int64, ok bool) {
	if v == "" {
		return 1, true
	}
	if len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		cost = cost*10 + int64(c-'0')
	}
	return cost, true
}

// The problems of a presented credential. They are safe to show: none says
// anything about the credential beyond its shape.
var (
	errAmbiguous = &credential.Error{Kind: credential.ErrMalformed, Reason: reasonInvalidFormat,
		Message: "The request carries several different credentials."}
	errTooLong = &credential.Error{Kind: credential.ErrMalformed, Reason: reasonInvalidFormat,
		Message: "The credential is too long."}
	errCharset = &credential.Error{Kind: credential.ErrMalformed, Reason: reasonInvalidFormat,
		Message: "The credential contains characters that are not printable ASCII."}
)

// FromCheckRequest extracts the facts of an Envoy check. It is safe on any
// input, including nil and partially filled messages; a nil o means the
// default Options.
//
// Headers come from attributes.request.http.headers, or from header_map when
// headers is empty (Envoy's encode_raw_headers). Envoy lowercases header
// names. The route's requirements come from the context extensions
// talos.scopes and talos.audiences (separated by spaces and/or commas) and
// talos.tenant (else o.Tenant).
func FromCheckRequest(r *authv3.CheckRequest, o *Options) Request {
	o = resolve(o)
	attrs := r.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	src := checkHeaders{m: h.GetHeaders()}
	if len(src.m) == 0 {
		src.m, src.raw = nil, h.GetHeaderMap().GetHeaders()
	}
	req := Request{Method: h.GetMethod(), Host: h.GetHost(), Path: h.GetPath()}
	var x extractor
	for _, name := range o.CredentialHeaders {
		x.header(name)
		src.each(name, x.add)
		if x.problem != nil {
			break
		}
	}
	req.Credential, req.CredentialHeader, req.Problem = x.result()
	for _, name := range o.ClientIPHeaders {
		if a, ok := src.addr(name); ok {
			req.ClientIP = a
			break
		}
	}
	if !req.ClientIP.IsValid() {
		req.ClientIP = credential.ParseAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress())
	}
	ext := attrs.GetContextExtensions()
	req.Tenant = tenantOr(ext[ExtensionTenant], o.Tenant)
	req.RequiredScopes = splitList(ext[ExtensionScopes])
	req.Audiences = splitList(ext[ExtensionAudiences])
	req.Cost, req.CostInvalid = costOf(ext[ExtensionCost])
	return req
}

// FromHTTP extracts the facts of an HTTP-mode check; a nil o means the
// default Options.
//
// The original method, URI and host come from X-Forwarded-Method,
// X-Forwarded-Uri and X-Forwarded-Host (Traefik and Caddy forward-auth) or
// X-Original-Method and X-Original-URI (nginx auth_request), else from r
// itself (Envoy's http_service appends the original path to its
// path_prefix, which Options.HTTPPathPrefix strips). The route's
// requirements come from X-Talos-Scopes, X-Talos-Tenant and
// X-Talos-Audiences. The proxy must set or clear these three headers:
// a client that can pass its own X-Talos-Tenant or X-Talos-Audiences
// chooses the tenant or audience it is checked against.
func FromHTTP(r *http.Request, o *Options) Request {
	o = resolve(o)
	var req Request
	if r == nil {
		req.Tenant, req.Cost = o.Tenant, 1
		return req
	}
	h := r.Header
	var x extractor
	for _, name := range o.CredentialHeaders {
		x.header(name)
		for _, v := range h[textproto.CanonicalMIMEHeaderKey(name)] {
			x.add(v)
		}
		if x.problem != nil {
			break
		}
	}
	req.Credential, req.CredentialHeader, req.Problem = x.result()
	req.ClientIP = httpClientIP(r, o)
	req.Method = first(h.Get("X-Forwarded-Method"), h.Get("X-Original-Method"), r.Method)
	req.Path = first(h.Get("X-Forwarded-Uri"), h.Get("X-Original-Uri"))
	if req.Path == "" {
		// The request target as received: r.URL is decoded, and
		// re-encoding it would hide what the upstream app gets.
		if strings.HasPrefix(r.RequestURI, "/") {
			req.Path = r.RequestURI
		} else if r.URL != nil {
			req.Path = r.URL.RequestURI()
		}
		if o.HTTPPathPrefix != "" {
			// Envoy's http_service sends {path_prefix}{:path}. A target
			// not under the prefix, or the prefix alone (no original path
			// after it), has no path to judge: "" never holds a path
			// condition.
			if rest, ok := strings.CutPrefix(req.Path, o.HTTPPathPrefix); ok && strings.HasPrefix(rest, "/") {
				req.Path = rest
			} else {
				req.Path = ""
			}
		}
	}
	req.Host = first(h.Get("X-Forwarded-Host"), r.Host)
	req.Tenant = tenantOr(h.Get(HeaderTenant), o.Tenant)
	req.RequiredScopes = splitLists(h[HeaderScopes])
	req.Audiences = splitLists(h[HeaderAudiences])
	req.Cost = 1
	if o.CostHeader != "" {
		vs := h[textproto.CanonicalMIMEHeaderKey(o.CostHeader)]
		switch len(vs) {
		case 0:
		case 1:
			req.Cost, req.CostInvalid = costOf(vs[0])
		default:
			req.CostInvalid = true
		}
	}
	return req
}

// httpClientIP is the first of o.ClientIPHeaders that parses, else the TCP
// peer.
func httpClientIP(r *http.Request, o *Options) netip.Addr {
	for _, name := range o.ClientIPHeaders {
		if vs := r.Header[textproto.CanonicalMIMEHeaderKey(name)]; len(vs) > 0 {
			if a := credential.ForwardedAddr(vs); a.IsValid() {
				return a
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return credential.ParseAddr(host)
}

// checkHeaders reads the headers of an Envoy check: the merged map, or the
// raw list when the map is empty.
type checkHeaders struct {
	m   map[string]string
	raw []*corev3.HeaderValue
}

// each calls fn with every value of the header name.
func (c checkHeaders) each(name string, fn func(string)) {
	if c.m != nil {
		if v, ok := c.m[name]; ok {
			fn(v)
		}
		return
	}
	for _, hv := range c.raw {
		if hv != nil && strings.EqualFold(hv.GetKey(), name) {
			fn(rawValue(hv))
		}
	}
}

// addr parses the last entry of the last value of name.
func (c checkHeaders) addr(name string) (netip.Addr, bool) {
	var last string
	c.each(name, func(v string) { last = v })
	a := credential.ForwardedAddr([]string{last})
	return a, a.IsValid()
}

func rawValue(hv *corev3.HeaderValue) string {
	if len(hv.GetRawValue()) > 0 {
		return string(hv.GetRawValue())
	}
	return hv.GetValue()
}

// extractor collects the values of every credential header. Proxies merge
// repeated headers into one comma-separated value (RFC 9110, section 5.3), so
// a comma always separates values: a credential cannot contain one, and
// "a,a" is one credential while "a,b" is ambiguous. The same holds across
// headers: a request that presents "a" in one credential header and "b" in
// another is ambiguous too, since a check that looked at one of them only
// would let the other reach the upstream unverified.
type extractor struct {
	// bearer: values of the current header must be "Bearer <credential>";
	// other schemes are skipped as if the header were absent.
	bearer bool
	// name is the current header; from the header the credential was
	// first found in.
	name, from string
	cred       string
	found      bool
	problem    error
}

// header starts the values of the header name.
func (x *extractor) header(name string) {
	x.name, x.bearer = name, name == "authorization"
}

func (x *extractor) add(v string) {
	for x.problem == nil {
		part, rest, more := strings.Cut(v, ",")
		x.addOne(trimOWS(part))
		if !more {
			return
		}
		v = rest
	}
}

func (x *extractor) addOne(p string) {
	if x.bearer {
		var ok bool
		if p, ok = bearerToken(p); !ok {
			return
		}
	}
	if p == "" {
		return
	}
	if x.found && p != x.cred {
		x.problem = errAmbiguous
		return
	}
	if !x.found {
		x.cred, x.found, x.from = p, true, x.name
	}
}

// result returns the credential and the header it was first found in, or
// the problem that makes it unusable.
func (x *extractor) result() (cred, header string, problem error) {
	switch {
	case !x.found:
		return "", "", nil
	case x.problem != nil:
		return "", x.from, x.problem
	case len(x.cred) > credential.MaxCredentialBytes:
		return "", x.from, errTooLong
	case !printable(x.cred):
		return "", x.from, errCharset
	}
	return x.cred, x.from, nil
}

// bearerToken returns the credential of "Bearer <credential>" (scheme
// case-insensitive, one or more spaces).
func bearerToken(v string) (string, bool) {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' {
		return "", false
	}
	return strings.TrimLeft(rest, " "), true
}

// printable reports whether s is made of printable ASCII (0x21-0x7E) only.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

func isListSep(r rune) bool { return r == ' ' || r == ',' || r == '\t' }

// splitList splits a list separated by spaces and/or commas; nil when empty.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	f := strings.FieldsFunc(s, isListSep)
	if len(f) == 0 {
		return nil
	}
	return f
}

// splitLists is splitList over every value of a repeated header.
func splitLists(vs []string) []string {
	if len(vs) == 1 {
		return splitList(vs[0])
	}
	var out []string
	for _, v := range vs {
		out = append(out, splitList(v)...)
	}
	return out
}

func tenantOr(hint string, def credential.Tenant) credential.Tenant {
	if hint = trimOWS(hint); hint != "" {
		return credential.Tenant(hint)
	}
	return def
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
