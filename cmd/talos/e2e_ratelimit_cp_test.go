package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	ory "github.com/ory/client-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// rateLimitEnv enables rate limiting on Redis (TALOS_TEST_REDIS_ADDR, under
// a prefix of its own) or, without one, in memory.
func rateLimitEnv(t *testing.T) ([]string, string) {
	t.Helper()
	env := []string{"TALOS_RATE_LIMIT_ENABLED=true"}
	addr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if addr == "" {
		t.Log("TALOS_TEST_REDIS_ADDR is not set: the memory backend is tested")
		return append(env, "TALOS_RATE_LIMIT_BACKEND=memory"), "memory"
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return append(env, "TALOS_RATE_LIMIT_BACKEND=redis", "TALOS_CACHE_REDIS_ADDRS="+addr,
		"TALOS_RATE_LIMIT_REDIS_KEY_PREFIX=talos-test:e2e-rl:"+hex.EncodeToString(b[:])+":"), "redis"
}

// issueWithQuota issues a key with quota units per 60s (no policy for 0)
// and returns its secret.
func issueWithQuota(t *testing.T, c *ory.APIClient, quota int) string {
	t.Helper()
	in := ory.IssueApiKeyRequest{Name: ptr("rl"), ActorId: ptr("svc-rl")}
	if quota > 0 {
		in.RateLimitPolicy = &ory.RateLimitPolicy{Quota: ptr(strconv.Itoa(quota)), Window: ptr("60s")}
	}
	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(in).Execute()
	return mustOK(t, "issue", issued, resp, err).GetSecret()
}

// rawVerify posts body to path and returns the status, headers and the
// decoded JSON body.
func rawVerify(t *testing.T, base, path, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: body %s: %v", path, b, err)
	}
	for k := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "grpc-metadata-") {
			t.Errorf("%s: gateway leaked header %s", path, k)
		}
	}
	return resp.StatusCode, resp.Header, m
}

var rateLimitState = regexp.MustCompile(`^"default";r=(\d+);t=(\d+)$`)

// TestE2E_RateLimitControlPlane drives a real `talos serve` with
// rate_limit.enabled over HTTP and gRPC: the quota is enforced on the
// public verify API with Talos's fields and headers, and the sidecar
// protocol never counts.
func TestE2E_RateLimitControlPlane(t *testing.T) {
	env, backend := rateLimitEnv(t)
	srv := startServer(t, env...)
	c := sdk(srv.http)
	key := issueWithQuota(t, c, 2)
	body := `{"credential":"` + key + `"}`

	for i := range 2 {
		code, h, m := rawVerify(t, srv.http, "/v2alpha1/admin/apiKeys:verify", body)
		if code != http.StatusOK || m["is_valid"] != true {
			t.Fatalf("verify %d: %d %v, want 200 valid", i+1, code, m)
		}
		if got := h.Get("RateLimit-Policy"); got != `"default";q=2;w=60` {
			t.Errorf("verify %d: RateLimit-Policy %q", i+1, got)
		}
		st := rateLimitState.FindStringSubmatch(h.Get("RateLimit"))
		if st == nil || st[1] != strconv.Itoa(1-i) {
			t.Errorf("verify %d: RateLimit %q, want r=%d", i+1, h.Get("RateLimit"), 1-i)
		}
		if m["rate_limit_remaining"] != strconv.Itoa(1-i) || m["rate_limit_reset_time"] == nil {
			t.Errorf("verify %d: remaining %v reset %v", i+1, m["rate_limit_remaining"], m["rate_limit_reset_time"])
		}
		if h.Get("Retry-After") != "" {
			t.Errorf("verify %d: Retry-After on an allowed verify", i+1)
		}
	}
	code, h, m := rawVerify(t, srv.http, "/v2alpha1/admin/apiKeys:verify", body)
	if code != http.StatusOK || m["is_valid"] != false || m["error_code"] != "VERIFICATION_ERROR_RATE_LIMITED" || m["error_message"] != "rate limit exceeded" {
		t.Fatalf("3rd verify: %d %v, want 200 is_valid:false RATE_LIMITED", code, m)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 30 {
		t.Errorf("3rd verify: Retry-After %q, want whole seconds in [1, 30]", h.Get("Retry-After"))
	}
	if m["rate_limit_remaining"] != "0" || m["rate_limit_reset_time"] == nil {
		t.Errorf("3rd verify: remaining %v reset %v, want 0 and a time", m["rate_limit_remaining"], m["rate_limit_reset_time"])
	}

	// The official SDK decodes the verdict and the fields.
	v := wantVerdict(t, c, key, false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_RATE_LIMITED)
	if v.GetRateLimitRemaining() != "0" || v.GetRateLimitResetTime().Before(time.Now().Add(-time.Minute)) {
		t.Errorf("SDK: remaining %q reset %v", v.GetRateLimitRemaining(), v.GetRateLimitResetTime())
	}

	// Batch: per item; Retry-After only, no per-key header.
	free := issueWithQuota(t, c, 0)
	code, h, m = rawVerify(t, srv.http, "/v2alpha1/admin/apiKeys:batchVerify",
		`{"requests":[{"credential":"`+key+`"},{"credential":"`+free+`"}]}`)
	res, _ := m["results"].([]any)
	if code != http.StatusOK || len(res) != 2 {
		t.Fatalf("batch: %d %v", code, m)
	}
	if r0 := res[0].(map[string]any); r0["error_code"] != "VERIFICATION_ERROR_RATE_LIMITED" || r0["rate_limit_remaining"] != "0" {
		t.Errorf("batch item 0: %v, want RATE_LIMITED with remaining 0", r0)
	}
	if r1 := res[1].(map[string]any); r1["is_valid"] != true || r1["rate_limit_remaining"] != nil {
		t.Errorf("batch item 1 (no policy): %v, want valid without rate-limit state", r1)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("batch: Retry-After %q", h.Get("Retry-After"))
	}
	if h.Get("RateLimit-Policy") != "" || h.Get("RateLimit") != "" {
		t.Errorf("batch: per-key headers %q %q, want none", h.Get("RateLimit-Policy"), h.Get("RateLimit"))
	}
	// A key without policy is never limited and gets no header.
	for range 5 {
		_, h, m := rawVerify(t, srv.http, "/v2alpha1/admin/apiKeys:verify", `{"credential":"`+free+`"}`)
		if m["is_valid"] != true || h.Get("RateLimit-Policy") != "" || h.Get("RateLimit") != "" {
			t.Fatalf("no-policy key: %v %v", m, h)
		}
	}

	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// The gRPC twin: the same verdict, the headers as metadata.
	var md metadata.MD
	gv, err := pb.NewApiKeysClient(conn).AdminVerifyApiKey(ctx, &pb.VerifyApiKeyRequest{Credential: key}, grpc.Header(&md))
	if err != nil || gv.GetErrorCode() != pb.VerificationErrorCode_VERIFICATION_ERROR_RATE_LIMITED {
		t.Fatalf("gRPC verify: %v %v", gv, err)
	}
	if got := md.Get("ratelimit-policy"); len(got) != 1 || got[0] != `"default";q=2;w=60` || len(md.Get("retry-after")) != 1 {
		t.Errorf("gRPC header metadata %v", md)
	}

	// The sidecar protocol never counts: a quota-1 key verifies 10 times,
	// and then still has its unit on the public API.
	one := issueWithQuota(t, c, 1)
	sc := sidecarpb.NewVerifierClient(conn)
	for i := range 10 {
		r, err := sc.Verify(ctx, &sidecarpb.VerifyRequest{Credential: one})
		if err != nil || r.GetOutcome() != sidecarpb.Outcome_OUTCOME_VALID {
			t.Fatalf("sidecar Verify %d: %v %v, want valid", i+1, r, err)
		}
	}
	if _, err := sc.BatchVerify(ctx, &sidecarpb.BatchVerifyRequest{Requests: []*sidecarpb.VerifyRequest{{Credential: one}, {Credential: one}}}); err != nil {
		t.Fatal(err)
	}
	wantVerdict(t, c, one, true, "")
	wantVerdict(t, c, one, false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_RATE_LIMITED)

	// Metrics: where="controlplane", the backend, the results.
	resp, err := http.Get(srv.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mb, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`talos_ratelimit_decisions_total{backend="` + backend + `",result="allowed",where="controlplane"} 3`,
		`talos_ratelimit_decisions_total{backend="` + backend + `",result="limited",where="controlplane"} 5`,
		`talos_ratelimit_backend_duration_seconds_count{backend="` + backend + `"} 8`,
	} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestE2E_RateLimitDisabledReportsPolicy: with rate_limit.enabled off, a
// key's policy is still announced (RateLimit-Policy) but nothing is
// counted: no RateLimit header, no rate_limit_remaining, never limited.
func TestE2E_RateLimitDisabledReportsPolicy(t *testing.T) {
	srv := startServer(t)
	c := sdk(srv.http)
	key := issueWithQuota(t, c, 1)
	for i := range 3 {
		code, h, m := rawVerify(t, srv.http, "/v2alpha1/admin/apiKeys:verify", `{"credential":"`+key+`"}`)
		if code != http.StatusOK || m["is_valid"] != true || m["rate_limit_remaining"] != nil {
			t.Fatalf("verify %d: %d %v", i+1, code, m)
		}
		if h.Get("RateLimit-Policy") != `"default";q=1;w=60` || h.Get("RateLimit") != "" || h.Get("Retry-After") != "" {
			t.Fatalf("verify %d: headers %v", i+1, h)
		}
	}
}

// deadRedis is a listener that accepts and at once closes every
// connection: a Redis that is down. It is held until the test ends.
func deadRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestE2E_RateLimitRedisDown: with the limiter's Redis down, failure_mode
// open verifies without rate-limit state (but with the policy), closed
// answers 503 UNAVAILABLE.
func TestE2E_RateLimitRedisDown(t *testing.T) {
	addr := deadRedis(t)
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			srv := startServer(t, "TALOS_RATE_LIMIT_ENABLED=true", "TALOS_RATE_LIMIT_BACKEND=redis",
				"TALOS_CACHE_REDIS_ADDRS="+addr, "TALOS_CACHE_REDIS_TIMEOUT=200ms", "TALOS_RATE_LIMIT_FAILURE_MODE="+mode)
			key := issueWithQuota(t, sdk(srv.http), 1)
			for i := range 3 {
				code, h, m := rawVerify(t, srv.http, "/v2alpha1/admin/apiKeys:verify", `{"credential":"`+key+`"}`)
				if mode == "closed" {
					if e, _ := m["error"].(map[string]any); code != http.StatusServiceUnavailable || e["status"] != "UNAVAILABLE" {
						t.Fatalf("closed, verify %d: %d %v, want 503 UNAVAILABLE", i+1, code, m)
					}
					continue
				}
				if code != http.StatusOK || m["is_valid"] != true || m["rate_limit_remaining"] != nil || m["rate_limit_reset_time"] != nil {
					t.Fatalf("open, verify %d: %d %v, want valid without rate-limit state", i+1, code, m)
				}
				if h.Get("RateLimit") != "" || h.Get("RateLimit-Policy") != `"default";q=1;w=60` {
					t.Fatalf("open, verify %d: headers %v", i+1, h)
				}
			}
		})
	}
}
