package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
)

// AdminTokens checks the static bearer tokens that protect the admin surface
// (serve.admin.auth.bearer_tokens). The zero value (no tokens) lets every
// caller through, like Ory Talos, whose admin API has no authentication.
// Tokens are compared as SHA-256 digests with crypto/subtle, so neither their
// content nor their length leaks through timing. Safe for concurrent use.
type AdminTokens struct{ digests [][32]byte }

// NewAdminTokens returns a checker for tokens; empty strings are ignored.
func NewAdminTokens(tokens []string) AdminTokens {
	var a AdminTokens
	for _, t := range tokens {
		if t != "" {
			a.digests = append(a.digests, sha256.Sum256([]byte(t)))
		}
	}
	return a
}

// Enabled reports whether any token is configured.
func (a AdminTokens) Enabled() bool { return len(a.digests) > 0 }

// Allow reports whether the Authorization header value carries a configured
// bearer token. Every configured token is compared, with no early exit.
func (a AdminTokens) Allow(authorization string) bool {
	if !a.Enabled() {
		return true
	}
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return false
	}
	d := sha256.Sum256([]byte(token))
	match := 0
	for i := range a.digests {
		match |= subtle.ConstantTimeCompare(d[:], a.digests[i][:])
	}
	return match == 1
}

// adminAuth rejects unauthenticated calls to /v2alpha1/admin/ paths with 401.
func adminAuth(tokens AdminTokens, next http.Handler) http.Handler {
	if !tokens.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2alpha1/admin/") && !tokens.Allow(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="talos-admin"`)
			writeError(w, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHORIZED", "a valid admin bearer token is required", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}
