package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	ory "github.com/ory/client-go"
)

// issueLimitedKey issues a key under a rate-limit policy.
func issueLimitedKey(t *testing.T, c *ory.APIClient, quota, window string) (secret, id string) {
	t.Helper()
	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(ory.IssueApiKeyRequest{
		Name: ptr("limited"), ActorId: ptr("svc-orders"), Scopes: []string{"read"},
		RateLimitPolicy: &ory.RateLimitPolicy{Quota: ptr(quota), Window: ptr(window)},
	}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	return issued.GetSecret(), issued.IssuedApiKey.GetKeyId()
}

// checkExt is check with route context extensions (talos.cost, ...).
func (p *testProxy) checkExt(t *testing.T, cred string, ext map[string]string) *authv3.CheckResponse {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5555}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Host: "app.test", Headers: map[string]string{"x-api-key": cred},
		}},
		ContextExtensions: ext,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := p.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// clientHeader is a header an allow adds to the client's response.
func clientHeader(r *authv3.CheckResponse, name string) string {
	for _, h := range r.GetOkResponse().GetResponseHeadersToAdd() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// deniedHeader is a header of a deny.
func deniedHeader(r *authv3.CheckResponse, name string) string {
	for _, h := range r.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// httpCheck is an HTTP-mode check of GET /orders with cred in x-api-key.
func (p *testProxy) httpCheck(t *testing.T, cred string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.http+"/orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// rateLimitedProxy is a sidecar with rate limiting on, a long TTL (nothing
// here waits for one) and push invalidation.
func rateLimitedProxy(t *testing.T, upstream string, extra ...string) *testProxy {
	t.Helper()
	return startProxy(t, upstream, append([]string{
		"TALOS_PROXY_RATE_LIMIT_ENABLED=true", "TALOS_PROXY_CACHE_TTL=10m",
	}, extra...)...)
}

// TestE2E_RateLimitSidecar: a key of quota 3 per 60s passes one sidecar
// three times, cache hits included, then is refused 429 with Retry-After and
// the RateLimit headers, over ext_authz gRPC and in HTTP mode.
func TestE2E_RateLimitSidecar(t *testing.T) {
	srv := startServer(t)
	p := rateLimitedProxy(t, srv.grpc)
	if !strings.Contains(p.log.String(), "N sidecars allow N x quota") {
		t.Errorf("the memory backend's start log does not warn of N x quota:\n%s", p.log.String())
	}
	c := sdk(srv.http)

	t.Run("grpc", func(t *testing.T) {
		key, id := issueLimitedKey(t, c, "3", "60s")
		calls := metric(t, p.metrics, "talos_proxy_upstream_calls_total")
		hits := metric(t, p.metrics, "talos_proxy_cache_lookups_total", `layer="memory"`, `result="hit"`)
		for i, want := range []string{`"default";r=2;t=20`, `"default";r=1;t=40`, `"default";r=0;t=60`} {
			r := p.check(t, key)
			if !allowed(r) || okHeader(r, "x-talos-key-id") != id {
				t.Fatalf("check %d = %v", i+1, r)
			}
			if got := clientHeader(r, "ratelimit-policy"); got != `"default";q=3;w=60` {
				t.Errorf("check %d: ratelimit-policy %q", i+1, got)
			}
			if got := clientHeader(r, "ratelimit"); got != want {
				t.Errorf("check %d: ratelimit %q, want %q", i+1, got, want)
			}
			if got := okHeader(r, "ratelimit"); got != "" {
				t.Errorf("check %d: the rate-limit state went to the upstream: %q", i+1, got)
			}
		}
		if got := metric(t, p.metrics, "talos_proxy_upstream_calls_total"); got != calls+1 {
			t.Errorf("upstream calls %v -> %v over three checks, want one", calls, got)
		}
		if got := metric(t, p.metrics, "talos_proxy_cache_lookups_total", `layer="memory"`, `result="hit"`); got != hits+2 {
			t.Errorf("memory hits %v -> %v, want two of the three allows from L1", hits, got)
		}
		r := p.check(t, key)
		if !deniedWith(r, http.StatusTooManyRequests) {
			t.Fatalf("fourth check = %v", r)
		}
		if ra := deniedHeader(r, "retry-after"); ra == "" || ra == "0" || len(ra) > 2 {
			t.Errorf("retry-after %q", ra)
		}
		if got := deniedHeader(r, "ratelimit"); !strings.HasPrefix(got, `"default";r=0;t=`) {
			t.Errorf("429 ratelimit %q", got)
		}
		if body := r.GetDeniedResponse().GetBody(); !strings.Contains(body, `"reason":"TOO_MANY_REQUESTS"`) || !strings.Contains(body, `"code":429`) {
			t.Errorf("429 body %s", body)
		}
		// Cost 0 meters without spending; the refusal is not cached.
		if r := p.checkExt(t, key, map[string]string{"talos.cost": "0"}); !allowed(r) || clientHeader(r, "ratelimit") != `"default";r=0;t=60` {
			t.Errorf("cost 0 = %v", r)
		}
		if r := p.checkExt(t, key, map[string]string{"talos.cost": "-1"}); !deniedWith(r, http.StatusServiceUnavailable) {
			t.Errorf("cost -1 = %v", r)
		}
		if got := metric(t, p.metrics, "talos_ratelimit_decisions_total", `where="sidecar"`, `backend="memory"`, `result="limited"`); got < 1 {
			t.Errorf("limited decisions = %v", got)
		}
	})

	t.Run("http", func(t *testing.T) {
		key, _ := issueLimitedKey(t, c, "3", "60s")
		for i := range 3 {
			resp, body := p.httpCheck(t, key)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("check %d = %d %s", i+1, resp.StatusCode, body)
			}
			if resp.Header.Get("RateLimit-Policy") != `"default";q=3;w=60` || !strings.HasPrefix(resp.Header.Get("RateLimit"), `"default";r=`) {
				t.Errorf("check %d headers %v", i+1, resp.Header)
			}
		}
		resp, body := p.httpCheck(t, key)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(resp.Header.Get("RateLimit"), `"default";r=0;t=`) || !strings.Contains(body, "TOO_MANY_REQUESTS") {
			t.Fatalf("fourth check = %d %v %s", resp.StatusCode, resp.Header, body)
		}
	})

	t.Run("unlimited key", func(t *testing.T) {
		key, _ := issueKey(t, c, "read")
		for i := range 10 {
			if r := p.check(t, key); !allowed(r) || clientHeader(r, "ratelimit-policy") != "" {
				t.Fatalf("check %d of a key without a policy = %v", i+1, r)
			}
		}
	})
}

// TestE2E_RateLimitPolicyChange: an update of a key's policy applies at the
// next check (push invalidation, no TTL wait); removing it lifts the limit
// at once.
func TestE2E_RateLimitPolicyChange(t *testing.T) {
	srv := startServer(t)
	p := rateLimitedProxy(t, srv.grpc)
	p.waitFresh(t)
	c := sdk(srv.http)
	key, id := issueLimitedKey(t, c, "100", "60s")
	if r := p.check(t, key); !allowed(r) || clientHeader(r, "ratelimit-policy") != `"default";q=100;w=60` {
		t.Fatalf("first check = %v", r)
	}
	update := func(pol *ory.RateLimitPolicy) {
		t.Helper()
		req := ory.AdminUpdateIssuedApiKeyRequest{}
		if pol != nil {
			req.SetRateLimitPolicy(*pol)
		}
		upd, resp, err := c.ApiKeysAPI.AdminUpdateIssuedApiKey(t.Context(), id).UpdateMask("rate_limit_policy").
			AdminUpdateIssuedApiKeyRequest(req).Execute()
		mustOK(t, "update", upd, resp, err)
	}
	// Stricter: 1 per 60s. The budget spent under the old policy is kept
	// (one TAT per key), so the next check is refused.
	update(&ory.RateLimitPolicy{Quota: ptr("1"), Window: ptr("60s")})
	eventually(t, "the new policy at the sidecar", 10*time.Second, func() bool {
		r := p.checkExt(t, key, map[string]string{"talos.cost": "0"})
		return clientHeader(r, "ratelimit-policy") == `"default";q=1;w=60`
	})
	if r := p.check(t, key); !deniedWith(r, http.StatusTooManyRequests) {
		t.Fatalf("check under the stricter policy = %v", r)
	}
	// Removed: unlimited at once.
	update(nil)
	eventually(t, "the policy removed at the sidecar", 10*time.Second, func() bool {
		return allowed(p.check(t, key))
	})
	for i := range 5 {
		if r := p.check(t, key); !allowed(r) || clientHeader(r, "ratelimit-policy") != "" {
			t.Fatalf("check %d without a policy = %v", i+1, r)
		}
	}
}

// TestE2E_RateLimitSharedRedis: two sidecars on one Redis share one budget.
func TestE2E_RateLimitSharedRedis(t *testing.T) {
	redisAddr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if redisAddr == "" {
		t.Skip("TALOS_TEST_REDIS_ADDR is not set")
	}
	srv := startServer(t)
	prefix := "talos-e2e:" + uuid.NewString() + ":"
	env := []string{
		"TALOS_PROXY_RATE_LIMIT_BACKEND=redis", "TALOS_PROXY_RATE_LIMIT_REDIS_KEY_PREFIX=" + prefix + "rl:",
		"TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_ADDRS=" + redisAddr, "TALOS_PROXY_CACHE_REDIS_SECRET=" + e2eRedisSecret,
		"TALOS_PROXY_CACHE_REDIS_KEY_PREFIX=" + prefix,
	}
	a := rateLimitedProxy(t, srv.grpc, env...)
	b := rateLimitedProxy(t, srv.grpc, env...)
	key, _ := issueLimitedKey(t, sdk(srv.http), "4", "60s")
	allows := 0
	for i := range 10 {
		p := a
		if i%2 == 1 {
			p = b
		}
		r := p.check(t, key)
		switch {
		case allowed(r):
			allows++
		case !deniedWith(r, http.StatusTooManyRequests):
			t.Fatalf("check %d = %v", i+1, r)
		}
	}
	if allows != 4 {
		t.Fatalf("%d allows across two sidecars of one Redis, want 4", allows)
	}
	for _, p := range []*testProxy{a, b} {
		if got := metric(t, p.metrics, "talos_ratelimit_decisions_total", `backend="redis"`, `result="allowed"`); got != 2 {
			t.Errorf("redis allowed decisions at one sidecar = %v, want 2", got)
		}
	}
}
