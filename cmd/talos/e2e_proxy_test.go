package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	ory "github.com/ory/client-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// e2eRedisSecret is the proxy.cache.redis.secret of test sidecars sharing a
// Redis.
const e2eRedisSecret = "e2e-redis-secret-0123456789abcdef0123"

type testProxy struct {
	grpc    string // ext_authz address
	http    string // base URL of the HTTP authorization listener
	metrics string // base URL of the metrics listener
	client  authv3.AuthorizationClient
	log     *logSink
}

// startProxy runs `talos proxy` through run() on ephemeral ports, pointed at
// upstream (a control plane's gRPC address), and stops it when the test ends.
func startProxy(t *testing.T, upstream string, extraEnv ...string) *testProxy {
	t.Helper()
	p, _ := launchProxy(t, upstream, extraEnv...)
	return p
}

// launchProxy is startProxy that also returns the process, to stop it (as
// SIGTERM would) and wait for it before the test ends.
func launchProxy(t *testing.T, upstream string, extraEnv ...string) (*testProxy, *process) {
	t.Helper()
	env := append([]string{
		"TALOS_PROXY_UPSTREAM=" + upstream,
		"TALOS_PROXY_UPSTREAM_TIMEOUT=1s",
		"TALOS_PROXY_EXTAUTHZ_HOST=127.0.0.1", "TALOS_PROXY_EXTAUTHZ_PORT=0",
		"TALOS_PROXY_HTTP_HOST=127.0.0.1", "TALOS_PROXY_HTTP_PORT=0",
		"TALOS_PROXY_METRICS_HOST=127.0.0.1", "TALOS_PROXY_METRICS_PORT=0",
		"TALOS_LOG_LEVEL=debug",
		"TALOS_PROXY_SHUTDOWN_DRAIN_DELAY=0s", // tests of the drain set their own
	}, extraEnv...)
	sink := &logSink{}
	proc := startProcess(t, "proxy", []string{"proxy"}, env, sink)
	p := &testProxy{log: sink}
	p.grpc = sink.waitAddr(t, "ext_authz server started")
	p.http = "http://" + sink.waitAddr(t, "Proxy HTTP server started")
	p.metrics = "http://" + sink.waitAddr(t, "Proxy metrics server started")
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.client = authv3.NewAuthorizationClient(conn)
	return p, proc
}

// check sends an Envoy CheckRequest carrying cred in x-api-key; a transport
// error fails the test, so call it from the test goroutine only.
func (p *testProxy) check(t *testing.T, cred string) *authv3.CheckResponse {
	t.Helper()
	resp, err := p.tryCheck(cred)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// tryCheck is check for worker goroutines: it returns the error.
func (p *testProxy) tryCheck(cred string) (*authv3.CheckResponse, error) {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5555}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Host: "app.test", Headers: map[string]string{"x-api-key": cred},
		}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.client.Check(ctx, req)
}

func allowed(r *authv3.CheckResponse) bool { return codes.Code(r.GetStatus().GetCode()) == codes.OK }

// deniedWith reports whether r is a deny with the HTTP status code.
func deniedWith(r *authv3.CheckResponse, code int) bool {
	d := r.GetDeniedResponse()
	return d != nil && int(d.GetStatus().GetCode()) == code
}

func okHeader(r *authv3.CheckResponse, name string) string {
	for _, h := range r.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// metric reads one sample from a Prometheus text exposition: the first line
// of family name carrying every label pair given (`k="v"`); 0 when absent.
func metric(t *testing.T, base, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	return 0
}

func issueKey(t *testing.T, c *ory.APIClient, scopes ...string) (secret, id string) {
	t.Helper()
	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(ory.IssueApiKeyRequest{
		Name: ptr("sidecar"), ActorId: ptr("svc-orders"), Scopes: scopes,
	}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	return issued.GetSecret(), issued.IssuedApiKey.GetKeyId()
}

// eventually polls cond every 20ms until it holds or the deadline passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2E_Sidecar runs a control plane and two sidecars sharing a real Redis,
// over real sockets, through the whole life of a key at the edge.
func TestE2E_Sidecar(t *testing.T) {
	redisAddr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if redisAddr == "" {
		t.Skip("TALOS_TEST_REDIS_ADDR is not set: the sidecar end-to-end test needs a real Redis")
	}
	srv := startServer(t)
	// The sidecars reach the control plane through a TCP proxy the test can
	// cut, standing for a network partition.
	link := newTCPProxy(t, srv.grpc)
	shared := []string{
		// This test is about the TTL bound; push invalidation has its own.
		"TALOS_PROXY_INVALIDATION_ENABLED=false",
		"TALOS_PROXY_CACHE_TTL=1s", "TALOS_PROXY_CACHE_NEGATIVE_TTL=1s", "TALOS_PROXY_STALE_IF_ERROR=5m",
		"TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_ADDRS=" + redisAddr, "TALOS_PROXY_CACHE_REDIS_SECRET=" + e2eRedisSecret,
		"TALOS_PROXY_CACHE_REDIS_KEY_PREFIX=talos-e2e:" + uuid.NewString() + ":",
	}
	a := startProxy(t, link.addr, shared...)
	b := startProxy(t, link.addr, shared...)
	c := sdk(srv.http)

	keyA, idA := issueKey(t, c, "read")
	keyB, _ := issueKey(t, c, "read")
	keyC, _ := issueKey(t, c)

	// Allowed, with the upstream headers.
	r := a.check(t, keyA)
	if !allowed(r) || okHeader(r, "x-talos-key-id") != idA || okHeader(r, "x-talos-actor-id") != "svc-orders" || okHeader(r, "x-talos-scopes") != "read" {
		t.Fatalf("first check = %v", r)
	}
	calls := metric(t, a.metrics, "talos_proxy_upstream_calls_total")
	if calls != 1 {
		t.Fatalf("upstream calls after the first check = %v, want 1", calls)
	}

	// The second check is an in-process hit: no upstream call.
	hits := metric(t, a.metrics, "talos_proxy_cache_lookups_total", `layer="memory"`, `result="hit"`)
	if r := a.check(t, keyA); !allowed(r) {
		t.Fatalf("second check = %v", r)
	}
	if got := metric(t, a.metrics, "talos_proxy_cache_lookups_total", `layer="memory"`, `result="hit"`); got != hits+1 {
		t.Fatalf("memory hits = %v, want %v", got, hits+1)
	}
	if got := metric(t, a.metrics, "talos_proxy_upstream_calls_total"); got != calls {
		t.Fatalf("upstream calls = %v after an L1 hit, want %v", got, calls)
	}

	// The second sidecar answers from Redis without asking upstream.
	if r := b.check(t, keyA); !allowed(r) || okHeader(r, "x-talos-key-id") != idA {
		t.Fatalf("second sidecar = %v", r)
	}
	if got := metric(t, b.metrics, "talos_proxy_cache_lookups_total", `layer="redis"`, `result="hit"`); got != 1 {
		t.Fatalf("second sidecar redis hits = %v, want 1", got)
	}
	if got := metric(t, b.metrics, "talos_proxy_upstream_calls_total"); got != 0 {
		t.Fatalf("second sidecar upstream calls = %v, want 0", got)
	}

	// Garbage is denied 401 without an upstream call.
	calls = metric(t, a.metrics, "talos_proxy_upstream_calls_total")
	for _, g := range []string{"ory_ak_v2_" + strings.Repeat("2", 72), strings.Repeat("x", 9000), "bad\x01key"} {
		if r := a.check(t, g); !deniedWith(r, http.StatusUnauthorized) {
			t.Fatalf("garbage %.16q = %v", g, r)
		}
	}
	if got := metric(t, a.metrics, "talos_proxy_upstream_calls_total"); got != calls {
		t.Fatalf("upstream calls = %v after garbage, want %v", got, calls)
	}
	if r := a.check(t, ""); !deniedWith(r, http.StatusUnauthorized) || r.GetDeniedResponse().GetHeaders() == nil {
		t.Fatalf("no credential = %v", r)
	}

	// HTTP mode answers the same way (Envoy http_service, nginx auth_request).
	req, _ := http.NewRequest(http.MethodGet, a.http+"/orders/42", nil)
	req.Header.Set("Authorization", "Bearer "+keyA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Talos-Key-Id") != idA {
		t.Fatalf("HTTP mode: %d %v", resp.StatusCode, resp.Header)
	}

	// Revocation without push invalidation: denied at the edge once the TTL
	// has passed.
	if r := a.check(t, keyB); !allowed(r) {
		t.Fatalf("key B = %v", r)
	}
	_, err = c.ApiKeysAPI.AdminRevokeIssuedApiKey(t.Context(), keyIDOf(t, c, keyB)).
		AdminRevokeIssuedApiKeyBody(ory.AdminRevokeIssuedApiKeyBody{Reason: ptr(ory.REVOCATIONREASON_REVOCATION_REASON_KEY_COMPROMISE)}).Execute()
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	eventually(t, "revoked key denied at the edge", 10*time.Second, func() bool { return deniedWith(a.check(t, keyB), http.StatusUnauthorized) })
	t.Logf("revoked key denied %v after the revoke (TTL 1s)", time.Since(revoked).Round(time.Millisecond))
	for range 5 {
		if r := a.check(t, keyB); allowed(r) {
			t.Fatal("revoked key allowed again after a deny")
		}
	}

	// The control plane becomes unreachable: the cached key keeps passing
	// (stale-if-error), a key never seen is denied 503, and both recover.
	link.stop()
	eventually(t, "stale serve while the control plane is down", 15*time.Second, func() bool {
		resp := verifyViaProxy(t, a, keyA)
		return resp.Header.Get("Ory-Talos-Cache") == "STALE" && resp.StatusCode == http.StatusOK
	})
	if r := a.check(t, keyA); !allowed(r) {
		t.Fatalf("cached key while the control plane is down = %v", r)
	}
	if r := a.check(t, keyC); !deniedWith(r, http.StatusServiceUnavailable) {
		t.Fatalf("unknown key while the control plane is down = %v", r)
	}
	link.start(t)
	eventually(t, "recovery after the control plane is back", 30*time.Second, func() bool { return allowed(a.check(t, keyC)) })
	if r := a.check(t, keyA); !allowed(r) {
		t.Fatalf("after recovery = %v", r)
	}

	// Health.
	conn, err := grpc.NewClient(a.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health = %v, %v", h, err)
	}
	for _, path := range []string{"/health/alive", "/health/ready"} {
		resp, err := http.Get(a.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s = %d", path, resp.StatusCode)
		}
	}
}

// verifyViaProxy calls the sidecar's Talos-compatible verify proxy.
func verifyViaProxy(t *testing.T, p *testProxy, cred string) *http.Response {
	t.Helper()
	resp, err := http.Post(p.http+"/v2alpha1/admin/apiKeys:verify", "application/json", strings.NewReader(`{"credential":"`+cred+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func keyIDOf(t *testing.T, c *ory.APIClient, secret string) string {
	t.Helper()
	return verify(t, c, secret).GetKeyId()
}
