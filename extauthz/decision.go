package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/errcode"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// The AIP-193 reasons this package adds to those of pkg/errcode.
const (
	reasonMissing           = "CREDENTIAL_MISSING"
	reasonInvalidFormat     = "INVALID_API_KEY_FORMAT"
	reasonInsufficientScope = "INSUFFICIENT_SCOPE"
	reasonUnavailable       = "SERVICE_UNAVAILABLE"
	reasonConditionNotMet   = "CONDITION_NOT_MET"
)

// The errors of local decisions, as Observe sees them in Verdict.Err.
var (
	errMissing = &credential.Error{Kind: credential.ErrUnauthenticated, Reason: reasonMissing,
		Message: "The request carries no credential."}
	errInsufficientScope = &credential.Error{Kind: credential.ErrForbidden, Reason: reasonInsufficientScope,
		Message: "The credential lacks a scope this route requires."}
	errCondition = &credential.Error{Kind: credential.ErrForbidden, Reason: reasonConditionNotMet,
		Message: "A condition of the credential does not hold for this request."}
	errBadCost = &credential.Error{Kind: credential.ErrUnavailable, Reason: reasonUnavailable,
		Message: "The route's rate-limit cost is not an integer >= 0."}
)

// denial is a rendered deny, shared by both transports.
type denial struct {
	status int
	code   codes.Code
	reason string
	// challenge is the WWW-Authenticate value, "" for none.
	challenge string
	// retryAfter is the Retry-After value in seconds, "" for none.
	retryAfter string
	// policy and state are the RateLimit-Policy and RateLimit values of a
	// rate-limit refusal, "" for none.
	policy, state string
	body          string
	// unavailable: the check could not be decided (Options.UnavailableAsError).
	unavailable bool
	// check is the gRPC form of a denial built once in New; nil for denials
	// built per check.
	check *authv3.CheckResponse
}

func newDenial(status int, reason, message, challenge string, retryAfter time.Duration) *denial {
	d := &denial{status: status, code: denyCode(status), reason: reason, challenge: challenge, unavailable: status >= 500}
	if retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		d.retryAfter = strconv.FormatInt(secs, 10)
	}
	d.body = denyBody(status, d.code, reason, message)
	return d
}

// decide is the decision shared by every transport. It returns the verdict
// to observe and the denial, nil on allow. It asks the Authorizer only about
// a usable credential.
func (s *Server) decide(ctx context.Context, req *Request, rl *rateAnswer) (Verdict, *denial) {
	if req.Problem != nil {
		return Verdict{Err: req.Problem}, s.problemDenial(req.Problem)
	}
	if req.Credential == "" {
		return Verdict{Err: errMissing}, s.static.missing
	}
	if req.CostInvalid && s.opts.RateLimiter != nil {
		s.logUnavailable(ctx, errBadCost)
		return Verdict{Err: errBadCost}, s.static.unavailable
	}
	v := s.auth.Authorize(ctx, credential.Presented{
		Tenant:            req.Tenant,
		Credential:        req.Credential,
		ClientIP:          req.ClientIP,
		ExpectedAudiences: req.Audiences,
	})
	if v.Err != nil {
		return v, s.errorDenial(ctx, v.Err)
	}
	if !holdsAll(v.Result.Scopes, req.RequiredScopes) {
		v.Err = errInsufficientScope
		return v, newDenial(http.StatusForbidden, reasonInsufficientScope, errInsufficientScope.Message,
			s.scopeChallenge(req.RequiredScopes), 0)
	}
	if len(v.Result.Conditions) > 0 && !conditionsHold(v.Result.Conditions, req) {
		v.Err = errCondition
		return v, s.static.condition
	}
	if v.Result.RatePolicy != nil && s.opts.RateLimiter != nil {
		return s.limit(ctx, req, v, rl)
	}
	return v, nil
}

// rateAnswer is what an allow tells the client about its rate limit.
type rateAnswer struct {
	// policy and state are the RateLimit-Policy and RateLimit values, ""
	// for none.
	policy, state string
	// remaining is the units left when metered (the limiter decided);
	// reset is how long until the budget is full again (allowed) or until
	// the request may retry (refused).
	remaining int64
	reset     time.Duration
	metered   bool
}

// limit meters an otherwise allowed check against the verdict's policy.
func (s *Server) limit(ctx context.Context, req *Request, v Verdict, rl *rateAnswer) (Verdict, *denial) {
	p := *v.Result.RatePolicy
	headers := !s.opts.OmitRateLimitHeaders
	if headers {
		rl.policy = ratelimit.PolicyValue(p)
	}
	if req.Cost > p.Quota {
		// It can never pass: come back after a window, when the budget is
		// full, and not even then.
		return s.limited(v, rl, ratelimit.Decision{RetryAfter: p.Window})
	}
	key := ratelimit.KeyOf(resultTenant(req, &v.Result), v.Result.KeyID)
	d, err := s.opts.RateLimiter.Allow(ctx, key, p, req.Cost)
	if err != nil {
		if s.opts.RateLimitFailClosed {
			s.logUnavailable(ctx, fmt.Errorf("rate limiter: %w", err))
			v.Err = errLimiterDown
			return v, s.static.unavailable
		}
		return v, nil
	}
	if !d.Allowed {
		return s.limited(v, rl, d)
	}
	if headers {
		rl.state = ratelimit.StateValue(d)
	}
	rl.remaining, rl.reset, rl.metered = d.Remaining, d.ResetAfter, true
	return v, nil
}

var errLimiterDown = &credential.Error{Kind: credential.ErrUnavailable, Reason: reasonUnavailable,
	Message: "The rate limiter is unavailable."}

// limited is the 429 of a refused request: built per check, never cached.
func (s *Server) limited(v Verdict, rl *rateAnswer, d ratelimit.Decision) (Verdict, *denial) {
	pub := errcode.Lookup(credential.ErrRateLimited)
	v.Err = &credential.Error{Kind: credential.ErrRateLimited, Reason: pub.Reason, Message: pub.Message, RetryAfter: d.RetryAfter}
	den := newDenial(http.StatusTooManyRequests, pub.Reason, pub.Message, "", 0)
	den.retryAfter = strconv.FormatInt(ratelimit.RetryAfterSeconds(d.RetryAfter), 10)
	rl.remaining, rl.reset, rl.metered = 0, d.RetryAfter, true
	if !s.opts.OmitRateLimitHeaders {
		den.policy, den.state = rl.policy, ratelimit.StateValue(d)
	}
	return v, den
}

// conditionsHold enforces the free conditions of an attenuated macaroon that
// the sidecar understands:
//
//   - "method": the request method, ASCII case-insensitive;
//   - "host": the request host, ASCII case-insensitive, port included and
//     nothing else normalised (see hostHolds);
//   - "path": a prefix the request path stays inside (see pathWithin); a
//     path that cannot be read one way only never holds.
//
// Any other condition fails: the sidecar is where the request is decided,
// and a restriction nobody enforces would turn the holder's attenuation into
// a grant. strings.EqualFold is not used: its Unicode folding makes "K"
// (U+212A KELVIN SIGN) equal "k", so a host or method the proxy routes
// elsewhere would pass.
func conditionsHold(conds map[string]string, req *Request) bool {
	for k, want := range conds {
		switch k {
		case "method":
			if want == "" || !asciiEqualFold(req.Method, want) {
				return false
			}
		case "host":
			if !hostHolds(req.Host, want) {
				return false
			}
		case "path":
			if !pathWithin(req.Path, want) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// hostHolds reports whether the request host got equals want, ignoring
// ASCII case only. Both must be a plain host[:port] (letters, digits, "-",
// ".", "_", or a bracketed IPv6 literal, then an optional numeric port); a
// list ("a, b", as a repeated X-Forwarded-Host arrives), userinfo or any
// other byte never holds. A trailing dot or a port is not removed: proxies
// route "api.example.com." and "api.example.com:8443" as they please, so a
// condition names the host exactly as the proxy passes it on.
func hostHolds(got, want string) bool {
	return plainHost(want) && plainHost(got) && asciiEqualFold(got, want)
}

func plainHost(h string) bool {
	port := ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 2 {
			return false
		}
		for i := 1; i < end; i++ {
			if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		port = h[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
	} else {
		name := h
		if i := strings.IndexByte(h, ':'); i >= 0 {
			name, port = h[:i], h[i:]
		}
		if name == "" {
			return false
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return false
			}
		}
	}
	if port == "" {
		return true
	}
	if len(port) < 2 || len(port) > 6 {
		return false
	}
	for i := 1; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

// asciiEqualFold reports whether a and b are equal when ASCII letters are
// folded to lower case; any other byte must be equal.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

func (s *Server) problemDenial(err error) *denial {
	for _, p := range s.static.problems {
		if err == p.err {
			return p.d
		}
	}
	return s.static.malformed
}

// errorDenial maps an Authorizer error through pkg/errcode. A failure to
// decide (ErrUnavailable, ErrDeadlineExceeded, an error that wraps no
// sentinel) becomes the one 503 denial, whose message never carries the
// cause.
func (s *Server) errorDenial(ctx context.Context, err error) *denial {
	for _, p := range s.static.sentinels {
		if err == p.err {
			if p.d.unavailable {
				s.logUnavailable(ctx, err)
			}
			return p.d
		}
	}
	pub := errcode.Describe(err)
	if pub.Sentinel == nil || pub.DenyHTTP >= http.StatusInternalServerError {
		s.logUnavailable(ctx, err)
		return s.static.unavailable
	}
	var retryAfter time.Duration
	var ce *credential.Error
	if errors.As(err, &ce) {
		retryAfter = ce.RetryAfter
	}
	challenge := ""
	if pub.DenyHTTP == http.StatusUnauthorized {
		challenge = s.static.invalidChallenge
	}
	return newDenial(pub.DenyHTTP, pub.Reason, pub.Message, challenge, retryAfter)
}

func (s *Server) logUnavailable(ctx context.Context, err error) {
	if s.log.Enabled(ctx, slog.LevelError) {
		s.log.LogAttrs(ctx, slog.LevelError, "authorization undecided, denied", slog.String("error", err.Error()))
	}
}

// holdsAll reports whether held contains every required scope.
func holdsAll(held, required []string) bool {
	for _, r := range required {
		if !slices.Contains(held, r) {
			return false
		}
	}
	return true
}

// scopeChallenge is the RFC 6750 insufficient_scope challenge. Bytes a
// scope-token may not hold are dropped, so a route's odd scope cannot break
// the header.
func (s *Server) scopeChallenge(required []string) string {
	b := make([]byte, 0, len(s.static.scopeChallenge)+32)
	b = append(b, s.static.scopeChallenge...)
	for i, sc := range required {
		if i > 0 {
			b = append(b, ' ')
		}
		for j := 0; j < len(sc); j++ {
			if c := sc[j]; c >= 0x21 && c <= 0x7e && c != '"' && c != '\\' {
				b = append(b, c)
			}
		}
	}
	b = append(b, '"')
	return string(b)
}

// denyCode is the gRPC status of a deny with HTTP status st.
func denyCode(st int) codes.Code {
	switch st {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.AlreadyExists
	}
	return codes.PermissionDenied
}

// denyBody is the JSON body of every deny:
// {"error":{"code":401,"status":"UNAUTHENTICATED","reason":"…","message":"…"}}.
func denyBody(st int, c codes.Code, reason, message string) string {
	b := make([]byte, 0, 96+len(reason)+len(message))
	b = append(b, `{"error":{"code":`...)
	b = strconv.AppendInt(b, int64(st), 10)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, errcode.StatusName(c))
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	b = append(b, "}}"...)
	return string(b)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
