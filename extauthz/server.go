package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// Server answers checks over Envoy ext_authz gRPC (Check) and HTTP
// (HTTPHandler). It is immutable after New and safe for concurrent use.
type Server struct {
	auth   Authorizer
	opts   Options
	log    *slog.Logger
	names  upstreamNames
	static statics
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// headerName is a header name in its wire (lowercase) and Go canonical forms.
type headerName struct{ lower, canonical string }

func newHeaderName(lower string) headerName {
	return headerName{lower: lower, canonical: textproto.CanonicalMIMEHeaderKey(lower)}
}

// upstreamNames are the names of the headers an allow sets for the upstream.
type upstreamNames struct {
	keyID, actorID, scopes, tenant, credentialType headerName
	meta                                           []metaName
}

type metaName struct {
	field string
	name  headerName
}

// statics are the parts of responses built once in New and shared by every
// response that uses them.
type statics struct {
	okStatus *rpcstatus.Status
	// contentType is the content-type option of every gRPC deny.
	contentType *corev3.HeaderValueOption
	missing     *denial
	malformed   *denial
	condition   *denial
	unavailable *denial
	problems    []errDenial
	sentinels   []errDenial
	// invalidChallenge is the challenge of a 401 for a bad credential;
	// scopeChallenge the start of an insufficient_scope challenge, up to
	// the opening quote of its scope.
	invalidChallenge string
	scopeChallenge   string
	unavailableErr   error
	// credentialHeaders are the credential headers, sorted: what an allow
	// removes with Options.RemoveCredential. Shared, never modified.
	credentialHeaders []string
	// tenant is Options.Tenant and types every credential type, as shared
	// upstream values.
	tenant      *sharedValue
	types       []*sharedValue
	unknownType *sharedValue
}

// credentialType returns the shared value of t, nil for an unknown type
// (whose header is left out).
func (st *statics) credentialType(t credential.CredentialType) *sharedValue {
	if int(t) < len(st.types) && t != credential.TypeUnknown {
		return st.types[t]
	}
	return nil
}

// errDenial is the denial of one error value, found by identity.
type errDenial struct {
	err error
	d   *denial
}

// New returns a Server asking a. Options' zero fields take their defaults;
// invalid options (header names that are not lowercase tokens, a credential
// header under the header prefix, a realm that cannot be quoted) are an
// error. New copies o's slices.
func New(a Authorizer, o Options) (*Server, error) {
	if a == nil {
		return nil, errors.New("extauthz: nil Authorizer")
	}
	opts := withDefaults(&o)
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("extauthz: invalid options: %w", err)
	}
	s := &Server{auth: a, opts: opts, log: opts.Logger}
	p := opts.HeaderPrefix
	s.names = upstreamNames{
		keyID:          newHeaderName(p + "key-id"),
		actorID:        newHeaderName(p + "actor-id"),
		scopes:         newHeaderName(p + "scopes"),
		tenant:         newHeaderName(p + "tenant"),
		credentialType: newHeaderName(p + "credential-type"),
	}
	for _, f := range opts.MetadataHeaders {
		s.names.meta = append(s.names.meta, metaName{field: f, name: newHeaderName(metaHeader(p, f))})
	}
	s.static = newStatics(&opts)
	s.static.tenant = newSharedValue(s.names.tenant.lower, string(opts.Tenant))
	for t := credential.TypeUnknown; t <= credential.TypeMacaroon; t++ {
		s.static.types = append(s.static.types, newSharedValue(s.names.credentialType.lower, t.String()))
	}
	s.static.unknownType = s.static.types[credential.TypeUnknown]
	return s, nil
}

func newStatics(o *Options) statics {
	missingChallenge := `Bearer realm="` + o.Realm + `"`
	st := statics{
		okStatus:         &rpcstatus.Status{Code: int32(codes.OK)},
		contentType:      headerOption("content-type", "application/json"),
		invalidChallenge: missingChallenge + `, error="invalid_token"`,
		scopeChallenge:   missingChallenge + `, error="insufficient_scope", scope="`,
		unavailableErr:   status.Error(codes.Unavailable, "authorization is unavailable"),
	}
	st.missing = newDenial(http.StatusUnauthorized, reasonMissing, errMissing.Message, missingChallenge, 0)
	st.malformed = newDenial(http.StatusUnauthorized, reasonInvalidFormat,
		errcode.Lookup(credential.ErrMalformed).Message, st.invalidChallenge, 0)
	st.unavailable = newDenial(http.StatusServiceUnavailable, reasonUnavailable,
		errcode.Lookup(credential.ErrUnavailable).Message, "", 0)
	for _, e := range []*credential.Error{errAmbiguous, errTooLong, errCharset} {
		st.problems = append(st.problems, errDenial{e, newDenial(http.StatusUnauthorized, reasonInvalidFormat, e.Message, st.invalidChallenge, 0)})
	}
	for _, e := range credential.Sentinels() {
		pub := errcode.Describe(e)
		d := st.unavailable
		if pub.DenyHTTP < http.StatusInternalServerError {
			challenge := ""
			if pub.DenyHTTP == http.StatusUnauthorized {
				challenge = st.invalidChallenge
			}
			d = newDenial(pub.DenyHTTP, pub.Reason, pub.Message, challenge, 0)
		}
		st.sentinels = append(st.sentinels, errDenial{e, d})
	}
	st.condition = newDenial(http.StatusForbidden, reasonConditionNotMet, errCondition.Message, "", 0)
	for _, d := range []*denial{st.missing, st.malformed, st.unavailable, st.condition} {
		d.check = buildDenied(d, st.contentType)
	}
	for _, l := range [][]errDenial{st.problems, st.sentinels} {
		for _, p := range l {
			if p.d.check == nil {
				p.d.check = buildDenied(p.d, st.contentType)
			}
		}
	}
	st.credentialHeaders = sortedSet(slices.Clone(o.CredentialHeaders))
	return st
}

// Register registers s as the envoy.service.auth.v3.Authorization service.
func (s *Server) Register(g *grpc.Server) { authv3.RegisterAuthorizationServer(g, s) }

// Check implements authv3.AuthorizationServer. It always answers with a
// response: OK with the upstream headers, or an explicit DeniedHttpResponse
// (401, 403, 429 or 503 and the like, see the package comment). The only
// error it returns is codes.Unavailable for an undecided check when
// Options.UnavailableAsError is set.
//
// The response shares immutable parts (statuses, static headers, whole
// static denials) with other responses: callers must not modify it.
func (s *Server) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := s.clock()
	req := FromCheckRequest(r, &s.opts)
	var rl rateAnswer
	v, d := s.decide(ctx, &req, &rl)
	if d == nil {
		resp := s.okResponse(r, &req, &v.Result, v.Memo)
		if rl.policy != "" || rl.metered {
			addRateLimit(resp, &rl)
		}
		s.observe("grpc", v, http.StatusOK, start)
		return resp, nil
	}
	s.observe("grpc", v, d.status, start)
	if d.unavailable && s.opts.UnavailableAsError {
		return nil, s.static.unavailableErr
	}
	if d.check != nil {
		return d.check, nil
	}
	return buildDenied(d, s.static.contentType), nil
}

// clock returns the start time of a decision when it is observed.
func (s *Server) clock() time.Time {
	if s.opts.Observe == nil {
		return time.Time{}
	}
	return time.Now()
}

func (s *Server) observe(transport string, v Verdict, status int, start time.Time) {
	if s.opts.Observe != nil {
		s.opts.Observe(transport, v, status, time.Since(start))
	}
}

// okAllocation holds the messages of one OK response, allocated together.
type okAllocation struct {
	resp authv3.CheckResponse
	wrap authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
	meta structpb.Struct
	list structpb.ListValue
	kind structpb.Value_ListValue
}

// headerAllocation holds one upstream header option and its value.
type headerAllocation struct {
	opt corev3.HeaderValueOption
	hv  corev3.HeaderValue
}

// okReused is an allow whose upstream headers and dynamic metadata come from
// a Memo: only the envelope and the per-request removals are new.
type okReused struct {
	resp authv3.CheckResponse
	wrap authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
}

func (s *Server) okResponse(r *authv3.CheckRequest, req *Request, res *credential.Result, memo *Memo) *authv3.CheckResponse {
	if p := memo.load(s); p != nil {
		a := &okReused{}
		a.ok.Headers = p.opts
		a.ok.HeadersToRemove = s.checkToRemove(r, p.hs)
		a.wrap.OkResponse = &a.ok
		a.resp.Status = s.static.okStatus
		a.resp.HttpResponse = &a.wrap
		a.resp.DynamicMetadata = p.meta
		return &a.resp
	}
	var buf [8]header
	hs := s.upstream(buf[:0], req, res)
	own := 0
	for _, h := range hs {
		if h.shared == nil {
			own++
		}
	}
	allocs := make([]headerAllocation, own)
	opts := make([]*corev3.HeaderValueOption, len(hs))
	own = 0
	for i, h := range hs {
		if h.shared != nil {
			opts[i] = h.shared
			continue
		}
		a := &allocs[own]
		own++
		a.hv.Key, a.hv.Value = h.name.lower, h.value
		a.opt.Header = &a.hv
		a.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		opts[i] = &a.opt
	}
	a := &okAllocation{}
	a.ok.Headers = opts
	a.ok.HeadersToRemove = s.checkToRemove(r, hs)
	a.wrap.OkResponse = &a.ok
	a.resp.Status = s.static.okStatus
	a.resp.HttpResponse = &a.wrap
	s.dynamicMetadata(a, req, res)
	if memo != nil && res.Tenant != "" {
		// Nothing above depends on the request once the result names its
		// tenant: keep the parts for the next allow of this verdict.
		memo.p.Store(&allowParts{srv: s, hs: slices.Clone(hs), opts: opts, meta: a.resp.DynamicMetadata})
	}
	return &a.resp
}

// checkToRemove lists the request headers Envoy must strip: every
// credential header when Options.RemoveCredential (not only the one the
// credential was read from: whatever another one carries, the same
// credential or another scheme, was not verified here), and every header
// under the prefix that the allow does not set, so a client cannot pass a
// forged x-talos-scopes (say) to the upstream.
func (s *Server) checkToRemove(r *authv3.CheckRequest, set []header) []string {
	var rm []string
	if s.opts.RemoveCredential {
		rm = s.static.credentialHeaders
	}
	owned := false
	add := func(k string) {
		if !s.spoofed(k, set) {
			return
		}
		if !owned {
			rm, owned = append(make([]string, 0, len(rm)+2), rm...), true
		}
		rm = append(rm, strings.ToLower(k))
	}
	h := r.GetAttributes().GetRequest().GetHttp()
	if m := h.GetHeaders(); len(m) > 0 {
		for k := range m {
			add(k)
		}
	} else {
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			add(hv.GetKey())
		}
	}
	if owned {
		rm = sortedSet(rm)
	}
	return rm
}

// buildDenied renders d as a CheckResponse.
func buildDenied(d *denial, contentType *corev3.HeaderValueOption) *authv3.CheckResponse {
	hs := make([]*corev3.HeaderValueOption, 1, 3)
	hs[0] = contentType
	if d.challenge != "" {
		hs = append(hs, headerOption("www-authenticate", d.challenge))
	}
	if d.retryAfter != "" {
		hs = append(hs, headerOption("retry-after", d.retryAfter))
	}
	if d.policy != "" {
		hs = append(hs, headerOption("ratelimit-policy", d.policy))
	}
	if d.state != "" {
		hs = append(hs, headerOption("ratelimit", d.state))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.code), Message: d.reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.status)},
			Headers: hs,
			Body:    d.body,
		}},
	}
}

// addRateLimit adds the client's rate-limit headers and the metadata
// rate_limit_remaining to an allow, leaving its shared parts (the Memo's
// upstream headers and metadata) untouched.
func addRateLimit(resp *authv3.CheckResponse, rl *rateAnswer) {
	ok := resp.GetOkResponse()
	hs := make([]*corev3.HeaderValueOption, 0, 2)
	if rl.policy != "" {
		hs = append(hs, headerOption("ratelimit-policy", rl.policy))
	}
	if rl.state != "" {
		hs = append(hs, headerOption("ratelimit", rl.state))
	}
	ok.ResponseHeadersToAdd = hs
	if rl.metered {
		old := resp.DynamicMetadata.GetFields()
		f := make(map[string]*structpb.Value, len(old)+1)
		maps.Copy(f, old)
		f["rate_limit_remaining"] = structpb.NewNumberValue(float64(rl.remaining))
		resp.DynamicMetadata = &structpb.Struct{Fields: f}
	}
}

func headerOption(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
