package extauthz

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
)

// Authorizer decides on one presented credential. The sidecar pipeline
// implements it; extauthz only asks. Implementations check everything about the
// credential itself (existence, state, expiry, the client-IP restriction
// against p.ClientIP, the audiences in p.ExpectedAudiences); the route's
// requirements (scopes) are checked here. extauthz asks only about a
// non-empty credential of printable ASCII of at most credential.MaxCredentialBytes.
// Implementations must be safe for concurrent use.
type Authorizer interface {
	Authorize(ctx context.Context, p credential.Presented) Verdict
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(ctx context.Context, p credential.Presented) Verdict

// Authorize calls f.
func (f AuthorizerFunc) Authorize(ctx context.Context, p credential.Presented) Verdict {
	return f(ctx, p)
}

// CacheStatus says where a verdict came from.
type CacheStatus uint8

const (
	// CacheNone: decided locally without a cache or the upstream (malformed
	// input).
	CacheNone CacheStatus = iota
	// CacheHit: answered from a cache (in-process or shared).
	CacheHit
	// CacheMiss: the upstream was asked.
	CacheMiss
	// CacheStale: served from a cache past its TTL because the upstream is
	// down (stale-if-error).
	CacheStale
)

// String returns HIT, MISS, STALE or NONE, the values of the
// Ory-Talos-Cache header (STALE and NONE are Talos additions).
func (c CacheStatus) String() string {
	switch c {
	case CacheHit:
		return "HIT"
	case CacheMiss:
		return "MISS"
	case CacheStale:
		return "STALE"
	}
	return "NONE"
}

// Verdict is an Authorizer's answer.
type Verdict struct {
	// Result describes the credential; its KeyID is empty when no key was
	// found.
	Result credential.Result
	// Err is nil when the credential is valid. Otherwise it wraps a
	// credential sentinel: a verdict (ErrNotFound, ErrMalformed, ErrExpired,
	// ErrRevoked, ErrForbidden, ErrUnauthenticated, ErrRateLimited) or a
	// failure to decide (ErrUnavailable, ErrDeadlineExceeded).
	Err error
	// Cache says where the verdict came from; it is shown in the
	// Ory-Talos-Cache header of verify responses.
	Cache CacheStatus
	// Memo, when set, belongs to the cached verdict this one came from:
	// the rendered parts of an allow are kept there and shared by every
	// later allow of the same verdict. Nil renders every allow afresh.
	Memo *Memo
}

// Memo keeps the rendered upstream headers and dynamic metadata of an allow
// next to the cached verdict they were rendered from. The zero value is
// empty and ready. A Memo must belong to one immutable verdict; parts made
// by another Server are ignored.
type Memo struct{ p atomic.Pointer[allowParts] }

// allowParts are the request-independent parts of an allow. They are shared
// by many responses and never modified.
type allowParts struct {
	srv  *Server
	hs   []header
	opts []*corev3.HeaderValueOption
	meta *structpb.Struct
}

func (m *Memo) load(s *Server) *allowParts {
	if m == nil {
		return nil
	}
	if p := m.p.Load(); p != nil && p.srv == s {
		return p
	}
	return nil
}

// Options configure a Server. The zero value of each field takes the default
// given in its comment.
type Options struct {
	// CredentialHeaders are the lowercase request header names a credential
	// is read from. "authorization" takes the "Bearer <credential>" scheme
	// only (case-insensitive scheme; other schemes are no credential). A
	// request whose headers carry two different credentials is denied as
	// ambiguous, without a lookup. Default: ["authorization", "x-api-key"].
	CredentialHeaders []string
	// ClientIPHeaders are lowercase forwarded headers trusted for the client
	// address, in order (a list such as x-forwarded-for gives its rightmost
	// entry, the address the nearest proxy saw; the entries left of it are
	// the client's to forge); the
	// first that parses wins. Empty: the gRPC AttributeContext source
	// address, or the HTTP peer address (in HTTP mode, X-Forwarded-For /
	// X-Real-IP / X-Original-IP are not trusted unless listed here).
	ClientIPHeaders []string
	// HeaderPrefix prefixes the upstream headers of an allow:
	// {prefix}key-id, {prefix}actor-id, {prefix}scopes (space-separated),
	// {prefix}tenant, {prefix}credential-type, and {prefix}meta-{field} for
	// each MetadataHeaders field. Default "x-talos-".
	HeaderPrefix string
	// MetadataHeaders are the top-level metadata fields of a key copied into
	// upstream headers (string, number and bool values; others skipped).
	MetadataHeaders []string
	// RemoveCredential asks Envoy to strip every credential header on allow
	// (headers_to_remove; in HTTP mode x-envoy-auth-headers-to-remove), so
	// the upstream service never sees the key, nor anything else sent in
	// those headers (an Authorization of another scheme included).
	RemoveCredential bool
	// Tenant is the tenant of a check whose route names none. Default:
	// credential.DefaultTenant.
	Tenant credential.Tenant
	// Realm is the realm of the WWW-Authenticate challenge. Default "talos".
	Realm string
	// HTTPPathPrefix, when set, is the prefix under which HTTP-mode checks
	// arrive, as Envoy's http_service path_prefix sends them: a check of
	// /orders/1 comes as {prefix}/orders/1 and is judged on /orders/1.
	// Every other path outside /v2alpha1/ and /health/ is then 404 NOT_FOUND
	// (a deny to every proxy), so a client's request for a sidecar path can
	// never reach it as a check. "/" followed by unreserved path segments,
	// without a trailing "/", ".", ".." or a segment under /v2alpha1 or
	// /health. Default "": every such path is a check of itself.
	HTTPPathPrefix string
	// UnavailableAsError answers a check that cannot be decided (upstream
	// down and nothing cached) with gRPC UNAVAILABLE instead of a 503 deny,
	// so that Envoy's failure_mode_allow decides. Default false: fail closed
	// with a 503 deny.
	UnavailableAsError bool
	// Observe, when set, is called once per decision (transport "grpc",
	// "http" or "verify") for metrics, with the HTTP status answered (200 on
	// allow). v is the Authorizer's verdict, or a local one with CacheNone;
	// on a deny v.Err is the deny's cause (for a missing scope, a
	// credential.ErrForbidden with reason INSUFFICIENT_SCOPE). It runs on
	// the request path and must be safe for concurrent use.
	Observe func(transport string, v Verdict, status int, elapsed time.Duration)
	// RateLimiter, when set, meters every allow whose verdict carries a
	// rate-limit policy (credential.Result.RatePolicy), after every other
	// check has passed, so a denied request never spends quota. The key is
	// ratelimit.KeyOf(tenant, key ID); the cost is Request.Cost. A refused
	// request is a 429 TOO_MANY_REQUESTS with Retry-After; a cost above the
	// quota can never pass and is refused with Retry-After = the window.
	// Nil: no rate limiting.
	RateLimiter ratelimit.Limiter
	// RateLimitFailClosed answers a check whose limiter failed (backend
	// down and no fallback) with the 503 undecided deny. Default false:
	// allow it, with RateLimit-Policy but without RateLimit.
	RateLimitFailClosed bool
	// OmitRateLimitHeaders leaves RateLimit-Policy and RateLimit out of
	// answers (a 429 keeps its Retry-After). Default false: allows add them
	// to the client's response (gRPC response_headers_to_add; HTTP mode:
	// headers of the 200), and a 429 carries them.
	OmitRateLimitHeaders bool
	// CostHeader, in HTTP mode, is the lowercase request header whose
	// decimal integer value (>= 0) is the cost of the check; the proxy must
	// set or clear it, as a client that sends its own chooses its cost. An
	// invalid or repeated value is an undecided check (503). Default "": every
	// HTTP-mode check costs 1. gRPC checks read the context extension
	// talos.cost instead.
	CostHeader string
	// Logger receives undecided checks at error level (their cause, never
	// the credential). Default: discard.
	Logger *slog.Logger
}
