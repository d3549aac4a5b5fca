package extauthz

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/talos-project/talos/pkg/credential"
)

// header is one upstream header of an allow.
type header struct {
	name  *headerName
	value string
	// shared is the prebuilt gRPC option of a common value, or nil.
	shared *corev3.HeaderValueOption
}

// upstream appends the headers an allow sets for the upstream (see
// Options.HeaderPrefix). Empty values and values that cannot travel in a
// header (control characters, invalid UTF-8) are left out, so the
// anti-spoofing removal strips a forged header of that name instead.
func (s *Server) upstream(dst []header, req *Request, res *credential.Result) []header {
	n := &s.names
	dst = appendHeader(dst, &n.keyID, string(res.KeyID))
	dst = appendHeader(dst, &n.actorID, res.ActorID)
	switch len(res.Scopes) {
	case 0:
	case 1:
		dst = appendHeader(dst, &n.scopes, res.Scopes[0])
	default:
		dst = appendHeader(dst, &n.scopes, strings.Join(res.Scopes, " "))
	}
	if t := resultTenant(req, res); t == s.opts.Tenant {
		dst = append(dst, header{&n.tenant, string(t), s.static.tenant.opt})
	} else {
		dst = appendHeader(dst, &n.tenant, string(t))
	}
	if c := s.static.credentialType(res.Type); c != nil {
		dst = append(dst, header{&n.credentialType, c.name, c.opt})
	}
	if len(n.meta) > 0 && len(res.Metadata) > 0 {
		dst = s.appendMetadata(dst, res.Metadata)
	}
	return dst
}

func appendHeader(dst []header, name *headerName, value string) []header {
	if value == "" || !headerSafe(value) {
		return dst
	}
	return append(dst, header{name: name, value: value})
}

// appendMetadata appends a header for each Options.MetadataHeaders field
// whose value is a string, number or bool.
func (s *Server) appendMetadata(dst []header, raw json.RawMessage) []header {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return dst
	}
	for i := range s.names.meta {
		mn := &s.names.meta[i]
		if v, ok := scalar(m[mn.field]); ok {
			dst = appendHeader(dst, &mn.name, v)
		}
	}
	return dst
}

// scalar returns the text of a JSON string, number or bool.
func scalar(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false
	}
	switch c := v[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	case c == 't' || c == 'f' || c == '-' || (c >= '0' && c <= '9'):
		return string(v), true
	}
	return "", false
}

// headerSafe reports whether v can be a header value: valid UTF-8 (a proto
// string) without control characters other than tab.
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(v)
}

func resultTenant(req *Request, res *credential.Result) credential.Tenant {
	if res.Tenant != "" {
		return res.Tenant
	}
	return req.Tenant
}

// spoofed reports whether the request header k is under the prefix but not
// set by the allow.
func (s *Server) spoofed(k string, set []header) bool {
	p := s.opts.HeaderPrefix
	if len(k) < len(p) || !strings.EqualFold(k[:len(p)], p) {
		return false
	}
	for _, h := range set {
		if strings.EqualFold(k, h.name.lower) {
			return false
		}
	}
	return true
}

// sortedSet sorts l and removes duplicates, for a stable response.
func sortedSet(l []string) []string {
	slices.Sort(l)
	return slices.Compact(l)
}

// dynamicMetadata sets the Struct Envoy hands to later filters (under
// envoy.filters.http.ext_authz): key_id, actor_id, tenant, scopes and
// credential_type. Its messages live in a and in a few slices; the values of
// the default tenant and of the credential type are shared.
func (s *Server) dynamicMetadata(a *okAllocation, req *Request, res *credential.Result) {
	const own = 2 // key_id, actor_id
	n := len(res.Scopes)
	vals := make([]structpb.Value, own+n+1)
	strs := make([]structpb.Value_StringValue, own+n)
	str := func(i int, s string) *structpb.Value {
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		strs[i].StringValue = s
		vals[i].Kind = &strs[i]
		return &vals[i]
	}
	a.list.Values = make([]*structpb.Value, n)
	for i, sc := range res.Scopes {
		a.list.Values[i] = str(own+i, sc)
	}
	a.kind.ListValue = &a.list
	scopes := &vals[own+n]
	scopes.Kind = &a.kind

	tenant := s.static.tenant.value
	if t := resultTenant(req, res); t != s.opts.Tenant {
		tenant = structpb.NewStringValue(strings.ToValidUTF8(string(t), "\uFFFD"))
	}
	ctype := s.static.unknownType.value
	if c := s.static.credentialType(res.Type); c != nil {
		ctype = c.value
	}
	a.meta.Fields = map[string]*structpb.Value{
		"key_id":          str(0, string(res.KeyID)),
		"actor_id":        str(1, res.ActorID),
		"tenant":          tenant,
		"credential_type": ctype,
		"scopes":          scopes,
	}
	a.resp.DynamicMetadata = &a.meta
}

// sharedValue is a common upstream value prebuilt as a header option and a
// metadata value.
type sharedValue struct {
	name  string
	opt   *corev3.HeaderValueOption
	value *structpb.Value
}

func newSharedValue(header, v string) *sharedValue {
	return &sharedValue{name: v, opt: headerOption(header, v), value: structpb.NewStringValue(v)}
}
