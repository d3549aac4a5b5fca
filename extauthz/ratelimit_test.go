package extauthz_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/memory"
)

// countingLimiter records every Allow and delegates to a memory limiter, or
// fails with err when set.
type countingLimiter struct {
	next ratelimit.Limiter
	err  error

	mu    sync.Mutex
	keys  []string
	costs []int64
}

func (c *countingLimiter) Allow(ctx context.Context, key string, p credential.RatePolicy, cost int64) (ratelimit.Decision, error) {
	c.mu.Lock()
	c.keys, c.costs = append(c.keys, key), append(c.costs, cost)
	c.mu.Unlock()
	if c.err != nil {
		return ratelimit.Decision{}, c.err
	}
	return c.next.Allow(ctx, key, p, cost)
}

func (c *countingLimiter) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}

var quota2 = &credential.RatePolicy{Quota: 2, Window: 60 * time.Second}

// limitedFake is newFake with the key "metered" under quota2 and the
// key "metered-cond" under quota2 with a method condition.
func limitedFake() *fakeAuthorizer {
	f := newFake()
	r := goodResult
	r.RatePolicy = quota2
	f.verdicts["metered"] = extauthz.Verdict{Result: r, Cache: extauthz.CacheHit, Memo: &extauthz.Memo{}}
	c := r
	c.Conditions = map[string]string{"method": "POST"}
	f.verdicts["metered-cond"] = extauthz.Verdict{Result: c, Cache: extauthz.CacheHit}
	return f
}

func newCounting() *countingLimiter {
	return &countingLimiter{next: memory.New(memory.Options{})}
}

func keyed(cred string) map[string]string { return map[string]string{"x-api-key": cred} }

func responseHeaders(resp *authv3.CheckResponse) map[string]string {
	m := map[string]string{}
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

func TestRateLimitGRPC(t *testing.T) {
	lim := newCounting()
	s := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: lim})
	c := newTestGRPC(t, s)
	ctx := context.Background()
	for i, wantR := range []string{"1", "0"} {
		resp, err := c.Check(ctx, checkRequest(keyed("metered"), nil))
		if err != nil {
			t.Fatal(err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("check %d: %v", i, resp)
		}
		h := responseHeaders(resp)
		if h["ratelimit-policy"] != `"default";q=2;w=60` || h["ratelimit"] != `"default";r=`+wantR+`;t=`+strconv.Itoa(30*(i+1)) {
			t.Errorf("check %d: client headers %v", i, h)
		}
		rem := resp.GetDynamicMetadata().GetFields()["rate_limit_remaining"]
		if rem == nil || strconv.Itoa(int(rem.GetNumberValue())) != wantR {
			t.Errorf("check %d: rate_limit_remaining %v", i, rem)
		}
		if resp.GetDynamicMetadata().GetFields()["key_id"].GetStringValue() != string(goodResult.KeyID) {
			t.Errorf("check %d: metadata lost its key_id: %v", i, resp.GetDynamicMetadata())
		}
		if o := flatten(t, resp); o.Headers["x-talos-key-id"] != string(goodResult.KeyID) {
			t.Errorf("check %d: upstream headers %v", i, o.Headers)
		}
	}
	resp, err := c.Check(ctx, checkRequest(keyed("metered"), nil))
	if err != nil {
		t.Fatal(err)
	}
	o := flatten(t, resp)
	if o.Status != http.StatusTooManyRequests || codes.Code(o.GRPCCode) != codes.ResourceExhausted ||
		o.ErrorJSON.Error.Reason != "TOO_MANY_REQUESTS" || o.ErrorJSON.Error.Code != 429 {
		t.Fatalf("third check: %+v", o)
	}
	if o.Headers["retry-after"] != "30" || o.Headers["ratelimit"] != `"default";r=0;t=30` || o.Headers["ratelimit-policy"] != `"default";q=2;w=60` {
		t.Errorf("429 headers %v", o.Headers)
	}
	if want := ratelimit.KeyOf(credential.DefaultTenant, goodResult.KeyID); lim.keys[0] != want {
		t.Errorf("limiter key %q, want %q", lim.keys[0], want)
	}
	// A key without a policy is never metered.
	before := lim.calls()
	if resp, _ := c.Check(ctx, checkRequest(keyed("good"), nil)); codes.Code(resp.GetStatus().GetCode()) != codes.OK ||
		len(resp.GetOkResponse().GetResponseHeadersToAdd()) != 0 || lim.calls() != before {
		t.Errorf("unmetered key: %v, limiter calls %d -> %d", resp, before, lim.calls())
	}
}

// TestRateLimitAfterOtherChecks: a request denied for a scope or a
// condition spends nothing.
func TestRateLimitAfterOtherChecks(t *testing.T) {
	lim := newCounting()
	s := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: lim})
	ctx := context.Background()
	for range 5 {
		resp, _ := s.Check(ctx, checkRequest(keyed("metered"), map[string]string{extauthz.ExtensionScopes: "admin"}))
		if o := flatten(t, resp); o.Status != http.StatusForbidden {
			t.Fatalf("scope deny: %+v", o)
		}
		resp, _ = s.Check(ctx, checkRequest(keyed("metered-cond"), nil))
		if o := flatten(t, resp); o.Status != http.StatusForbidden {
			t.Fatalf("condition deny: %+v", o)
		}
		resp, _ = s.Check(ctx, checkRequest(keyed("expired"), nil))
		if o := flatten(t, resp); o.Status != http.StatusUnauthorized {
			t.Fatalf("expired: %+v", o)
		}
	}
	if n := lim.calls(); n != 0 {
		t.Fatalf("denied checks called the limiter %d times", n)
	}
	for i := range 2 {
		if resp, _ := s.Check(ctx, checkRequest(keyed("metered"), nil)); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("allow %d after denies: %v", i, resp)
		}
	}
}

func TestRateLimitCost(t *testing.T) {
	lim := newCounting()
	s := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: lim})
	ctx := context.Background()
	check := func(cost string) outcome {
		t.Helper()
		resp, err := s.Check(ctx, checkRequest(keyed("metered"), map[string]string{extauthz.ExtensionCost: cost}))
		if err != nil {
			t.Fatal(err)
		}
		o := flatten(t, resp)
		o.Headers["client:ratelimit"] = responseHeaders(resp)["ratelimit"]
		return o
	}
	// Invalid costs are undecided, whatever the key, and ask nobody.
	for _, bad := range []string{"-1", "abc", "1.5", " 1", "+1", "9999999999999999999"} {
		if o := check(bad); o.Status != http.StatusServiceUnavailable {
			t.Errorf("cost %q: %+v", bad, o)
		}
	}
	if lim.calls() != 0 {
		t.Fatalf("invalid costs called the limiter")
	}
	// Cost 0 meters without spending.
	for range 3 {
		if o := check("0"); o.Status != http.StatusOK || o.Headers["client:ratelimit"] != `"default";r=2;t=0` {
			t.Fatalf("cost 0: %+v", o)
		}
	}
	// A cost above the quota can never pass; it spends nothing.
	if o := check("3"); o.Status != http.StatusTooManyRequests || o.Headers["retry-after"] != "60" {
		t.Fatalf("cost 3 of 2: %+v", o)
	}
	if o := check("2"); o.Status != http.StatusOK {
		t.Fatalf("cost 2 of 2: %+v", o)
	}
	if o := check("1"); o.Status != http.StatusTooManyRequests {
		t.Fatalf("cost 1 after the budget is spent: %+v", o)
	}
	if got := lim.costs; len(got) != 5 || got[3] != 2 || got[4] != 1 {
		t.Errorf("limiter costs %v", got)
	}
}

func TestRateLimitFailureModes(t *testing.T) {
	ctx := context.Background()
	down := errors.New("redis: connection refused")
	open := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: &countingLimiter{err: down}})
	resp, _ := open.Check(ctx, checkRequest(keyed("metered"), nil))
	h := responseHeaders(resp)
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || h["ratelimit-policy"] != `"default";q=2;w=60` || h["ratelimit"] != "" {
		t.Errorf("fail open: %v", resp)
	}
	if _, ok := resp.GetDynamicMetadata().GetFields()["rate_limit_remaining"]; ok {
		t.Errorf("fail open reported a remaining count")
	}
	closed := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: &countingLimiter{err: down}, RateLimitFailClosed: true})
	resp, _ = closed.Check(ctx, checkRequest(keyed("metered"), nil))
	if o := flatten(t, resp); o.Status != http.StatusServiceUnavailable {
		t.Errorf("fail closed: %+v", o)
	}
	quiet := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: newCounting(), OmitRateLimitHeaders: true})
	resp, _ = quiet.Check(ctx, checkRequest(keyed("metered"), nil))
	if len(resp.GetOkResponse().GetResponseHeadersToAdd()) != 0 || resp.GetDynamicMetadata().GetFields()["rate_limit_remaining"] == nil {
		t.Errorf("headers off: %v", resp)
	}
}

func TestRateLimitHTTP(t *testing.T) {
	lim := newCounting()
	s := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: lim, CostHeader: "x-talos-cost"})
	srv := newTestHTTP(t, s)
	do := func(cost string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/orders", nil)
		req.Header.Set("X-Api-Key", "metered")
		if cost != "" {
			req.Header.Set("X-Talos-Cost", cost)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := do("x"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("bad cost header: %d", r.StatusCode)
	}
	r := do("")
	if r.StatusCode != http.StatusOK || r.Header.Get("RateLimit-Policy") != `"default";q=2;w=60` || r.Header.Get("RateLimit") != `"default";r=1;t=30` {
		t.Fatalf("allow: %d %v", r.StatusCode, r.Header)
	}
	if r := do("1"); r.StatusCode != http.StatusOK {
		t.Fatalf("second allow: %d", r.StatusCode)
	}
	r = do("")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "30" || r.Header.Get("RateLimit") != `"default";r=0;t=30` {
		t.Fatalf("429: %d %v", r.StatusCode, r.Header)
	}
	if _, err := extauthz.New(limitedFake(), extauthz.Options{CostHeader: "X-Cost"}); err == nil {
		t.Errorf("an upper-case cost header was accepted")
	}
}

func FuzzParseCost(f *testing.F) {
	for _, s := range []string{"", "0", "1", "42", "-1", "1e3", "999999999999999999", "9999999999999999999", " 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := extauthz.ParseCost(s)
		if !ok {
			return
		}
		if c < 0 {
			t.Fatalf("ParseCost(%q) = %d", s, c)
		}
		if s == "" {
			if c != 1 {
				t.Fatalf("empty cost = %d", c)
			}
			return
		}
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n != c || s[0] == '+' || s[0] == '-' {
			t.Fatalf("ParseCost(%q) = %d, strconv says %d, %v", s, c, n, err)
		}
	})
}

// TestRateLimitVerifyProxy: the verify proxy counts like the control
// plane's verify it stands in for.
func TestRateLimitVerifyProxy(t *testing.T) {
	lim := newCounting()
	s := mustServer(t, limitedFake(), extauthz.Options{RateLimiter: lim})
	srv := newTestHTTP(t, s)
	verify := func() (*http.Response, map[string]any) {
		t.Helper()
		resp, err := http.Post(srv.URL+extauthz.VerifyPath, "application/json", strings.NewReader(`{"credential":"metered"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	for i, want := range []float64{1, 0} {
		resp, body := verify()
		if resp.StatusCode != http.StatusOK || body["is_valid"] != true || body["rate_limit_remaining"] != strconv.FormatFloat(want, 'f', -1, 64) ||
			body["rate_limit_reset_time"] == nil || resp.Header.Get("RateLimit-Policy") != `"default";q=2;w=60` {
			t.Fatalf("verify %d: %d %v %v", i+1, resp.StatusCode, resp.Header, body)
		}
	}
	resp, body := verify()
	if resp.StatusCode != http.StatusOK || body["is_valid"] != false || body["error_code"] != "VERIFICATION_ERROR_RATE_LIMITED" ||
		body["rate_limit_remaining"] != "0" || resp.Header.Get("Retry-After") != "30" || resp.Header.Get("RateLimit-Policy") == "" {
		t.Fatalf("verify 3: %d %v %v", resp.StatusCode, resp.Header, body)
	}
	// A key without a policy is not counted.
	before := lim.calls()
	r, err := http.Post(srv.URL+extauthz.VerifyPath, "application/json", strings.NewReader(`{"credential":"good"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if lim.calls() != before || r.Header.Get("RateLimit-Policy") != "" {
		t.Errorf("a key without a policy was metered")
	}
}
