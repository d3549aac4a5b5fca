package extauthz

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
)

// VerifyPath is the Talos verify endpoint the HTTP handler proxies.
const VerifyPath = "/v2alpha1/admin/apiKeys:verify"

// MaxVerifyBodyBytes bounds the body of a verify request.
const MaxVerifyBodyBytes = 64 << 10

// CacheHeader carries Verdict.Cache on verify responses.
const CacheHeader = "Ory-Talos-Cache"

// HTTPHandler returns the HTTP-mode handler:
//
//   - POST /v2alpha1/admin/apiKeys:verify is a Talos-compatible verify
//     proxy: the same request and VerifyApiKeyResponse JSON as the control
//     plane, plus an Ory-Talos-Cache header (HIT, MISS, STALE or NONE).
//   - Other /v2alpha1/ paths and /health/ paths answer 404: the process
//     that mounts this handler serves health itself.
//   - With Options.HTTPPathPrefix set, other paths not under the prefix
//     answer 404.
//   - Every other path, with any method, is a check of that request (see
//     FromHTTP): 200 with the upstream headers as response headers on allow
//     (for nginx auth_request_set, Caddy copy_headers, Traefik
//     authResponseHeaders; Envoy's http_service also gets
//     x-envoy-auth-headers-to-remove), else the denial's status, headers and
//     JSON body. nginx passes only 401 and 403 on to the client; it turns
//     other statuses of auth_request into 500.
func (s *Server) HTTPHandler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == VerifyPath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeAPIError(w, http.StatusMethodNotAllowed, codes.Unimplemented, "METHOD_NOT_ALLOWED", "method not allowed", nil)
			return
		}
		s.serveVerify(w, r)
	case strings.HasPrefix(p, "/health/"), strings.HasPrefix(p, "/v2alpha1/"):
		writeAPIError(w, http.StatusNotFound, codes.NotFound, "NOT_FOUND", "not found", nil)
	case s.opts.HTTPPathPrefix != "" && !underPrefix(r.RequestURI, s.opts.HTTPPathPrefix):
		writeAPIError(w, http.StatusNotFound, codes.NotFound, "NOT_FOUND", "not found", nil)
	default:
		s.serveCheck(w, r)
	}
}

// underPrefix reports whether the raw request target uri is prefix itself
// or below it ("/p", "/p/x", "/p?q"). It reads the target as sent, not the
// decoded path, so that the part stripped is exactly the prefix.
func underPrefix(uri, prefix string) bool {
	rest, ok := strings.CutPrefix(uri, prefix)
	return ok && (rest == "" || rest[0] == '/' || rest[0] == '?')
}

func (s *Server) serveCheck(w http.ResponseWriter, r *http.Request) {
	start := s.clock()
	req := FromHTTP(r, &s.opts)
	var rl rateAnswer
	v, d := s.decide(r.Context(), &req, &rl)
	h := w.Header()
	if d != nil {
		h["Content-Type"] = []string{"application/json"}
		if d.challenge != "" {
			h["Www-Authenticate"] = []string{d.challenge}
		}
		if d.retryAfter != "" {
			h["Retry-After"] = []string{d.retryAfter}
		}
		setRateLimitHeaders(h, d.policy, d.state)
		w.WriteHeader(d.status)
		_, _ = io.WriteString(w, d.body)
		s.observe("http", v, d.status, start)
		return
	}
	var buf [8]header
	hs := s.upstream(buf[:0], &req, &v.Result)
	for _, x := range hs {
		h[x.name.canonical] = []string{x.value}
	}
	if rm := s.httpToRemove(r, hs); len(rm) > 0 {
		h["X-Envoy-Auth-Headers-To-Remove"] = []string{strings.Join(rm, ", ")}
	}
	setRateLimitHeaders(h, rl.policy, rl.state)
	w.WriteHeader(http.StatusOK)
	s.observe("http", v, http.StatusOK, start)
}

// setRateLimitHeaders sets RateLimit-Policy and RateLimit, each when not "".
// On an HTTP-mode allow they are headers of the 200 for the proxy to copy
// to the client (nginx auth_request_set + add_header, Caddy copy_headers):
// they describe the client's budget, not anything for the upstream.
func setRateLimitHeaders(h http.Header, policy, state string) {
	if policy != "" {
		h["Ratelimit-Policy"] = []string{policy}
	}
	if state != "" {
		h["Ratelimit"] = []string{state}
	}
}

// httpToRemove is checkToRemove for HTTP mode, where only Envoy's
// http_service can act on it.
func (s *Server) httpToRemove(r *http.Request, set []header) []string {
	var rm []string
	if s.opts.RemoveCredential {
		rm = append(rm, s.static.credentialHeaders...)
	}
	for k := range r.Header {
		if s.spoofed(k, set) {
			rm = append(rm, strings.ToLower(k))
		}
	}
	return sortedSet(rm)
}

func (s *Server) serveVerify(w http.ResponseWriter, r *http.Request) {
	start := s.clock()
	body, st := readBody(r, MaxVerifyBodyBytes)
	switch st {
	case http.StatusRequestEntityTooLarge:
		w.Header().Set("Connection", "close")
		writeAPIError(w, st, codes.InvalidArgument, "REQUEST_ENTITY_TOO_LARGE",
			"request body exceeds the limit of "+strconv.Itoa(MaxVerifyBodyBytes)+" bytes", nil)
		return
	case http.StatusBadRequest:
		writeAPIError(w, st, codes.InvalidArgument, "BAD_REQUEST", "could not read the request body", nil)
		return
	}
	var in pb.VerifyApiKeyRequest
	if len(bytes.TrimSpace(body)) > 0 {
		// protojson's own message may quote the input, credential included.
		if err := protojson.Unmarshal(body, &in); err != nil {
			writeAPIError(w, http.StatusBadRequest, codes.InvalidArgument, "BAD_REQUEST",
				"invalid request: the body is not a VerifyApiKeyRequest JSON object", nil)
			return
		}
	}
	var v Verdict
	switch c := in.GetCredential(); {
	case c == "":
		v.Err = &credential.Error{Kind: credential.ErrInvalidArgument, Reason: "CREDENTIAL_REQUIRED", Message: "credential is required"}
	case len(c) > credential.MaxCredentialBytes:
		v.Err = credential.Invalid("credential must be at most " + strconv.Itoa(credential.MaxCredentialBytes) + " bytes")
	default:
		v = s.auth.Authorize(r.Context(), credential.Presented{
			Tenant:            s.opts.Tenant,
			Credential:        c,
			ClientIP:          httpClientIP(r, &s.opts),
			ExpectedAudiences: in.GetExpectedAudiences(),
		})
	}
	var rl rateAnswer
	if v.Err == nil && v.Result.RatePolicy != nil && s.opts.RateLimiter != nil {
		// The verify proxy stands in for the control plane's verify, which
		// counts each call: so does it, at cost 1.
		req := Request{Tenant: s.opts.Tenant, Cost: 1}
		var d *denial
		v, d = s.limit(r.Context(), &req, v, &rl)
		if d != nil && d.retryAfter != "" {
			w.Header().Set("Retry-After", d.retryAfter)
		}
	}
	setRateLimitHeaders(w.Header(), rl.policy, rl.state)
	w.Header().Set(CacheHeader, v.Cache.String())
	st = s.writeVerify(w, r, v, &rl)
	s.observe("verify", v, st, start)
}

// writeVerify answers like the control plane: a verdict (or success) is a
// 200 VerifyApiKeyResponse; a bad request is a 4xx AIP-193 error; a failure
// to decide is a 503 that never carries its cause.
func (s *Server) writeVerify(w http.ResponseWriter, r *http.Request, v Verdict, rl *rateAnswer) int {
	if v.Err != nil && !credential.IsVerdict(v.Err) {
		pub := errcode.Describe(v.Err)
		if pub.Sentinel == nil || pub.HTTP >= http.StatusInternalServerError {
			if s.log.Enabled(r.Context(), slog.LevelError) {
				s.log.LogAttrs(r.Context(), slog.LevelError, "verify undecided", slog.String("error", v.Err.Error()))
			}
			un := errcode.Lookup(credential.ErrUnavailable)
			writeAPIError(w, http.StatusServiceUnavailable, codes.Unavailable, un.Reason, un.Message, nil)
			return http.StatusServiceUnavailable
		}
		writeAPIError(w, pub.HTTP, pub.GRPC, pub.Reason, pub.Message, pub.Metadata)
		return pub.HTTP
	}
	// The control plane's marshaler (controlplane/httpapi): proto field
	// names, unpopulated fields left out, output compacted.
	msg := apiconv.VerifyResponse(v.Result, v.Err)
	if rl.metered {
		msg.RateLimitRemaining = &rl.remaining
		msg.RateLimitResetTime = timestamppb.New(time.Now().Add(rl.reset))
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, codes.Internal, errcode.Internal.Reason, errcode.Internal.Message, nil)
		return http.StatusInternalServerError
	}
	var out bytes.Buffer
	out.Grow(len(b))
	if json.Compact(&out, b) == nil {
		b = out.Bytes()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return http.StatusOK
}

// readBody reads at most limit bytes of r's body; the status is 0, 413 for
// a body over limit, or 400 when it cannot be read.
func readBody(r *http.Request, limit int64) ([]byte, int) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, 0
	}
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	switch {
	case err != nil:
		return nil, http.StatusBadRequest
	case int64(len(body)) > limit:
		return nil, http.StatusRequestEntityTooLarge
	}
	return body, 0
}

// apiError is the AIP-193 error body of the control plane
// (controlplane/httpapi), field for field.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Status  string         `json:"status"`
	Details []apiErrorInfo `json:"details"`
}

type apiErrorInfo struct {
	Type     string            `json:"@type"`
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func writeAPIError(w http.ResponseWriter, st int, code codes.Code, reason, message string, md map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st)
	_ = json.NewEncoder(w).Encode(apiError{Error: apiErrorBody{
		Code:    st,
		Message: message,
		Status:  errcode.StatusName(code),
		Details: []apiErrorInfo{{Type: "type.googleapis.com/google.rpc.ErrorInfo", Reason: reason, Domain: errcode.Domain, Metadata: md}},
	}})
}
