package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// checkClient sends Envoy ext_authz v3 Check calls over a fixed set of
// HTTP/2 connections, as Envoy does with its ext_authz cluster (one
// connection per worker thread). Safe for concurrent use.
type checkClient struct {
	conns   []*grpc.ClientConn
	clients []authv3.AuthorizationClient
}

// dialCheck opens n connections to addr and waits until each is ready.
func dialCheck(ctx context.Context, addr string, n int) (*checkClient, error) {
	c := &checkClient{}
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
		c.clients = append(c.clients, authv3.NewAuthorizationClient(cc))
		// NewClient is lazy; connecting now keeps dialing out of the
		// first measured requests.
		cc.Connect()
	}
	for _, cc := range c.conns {
		if err := waitReady(ctx, cc); err != nil {
			c.Close()
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
	}
	return c, nil
}

func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		cc.Connect()
		if !cc.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// Close closes every connection.
func (c *checkClient) Close() {
	for _, cc := range c.conns {
		cc.Close()
	}
}

// checkRequest is what Envoy would send for `GET /orders/42` carrying cred
// in x-api-key, with the usual request headers.
func checkRequest(cred string) *authv3.CheckRequest {
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: addr("10.1.2.3", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: addr("10.1.9.9", 8080)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "6c5a3d9e-1b2f-4c8d-9e7a-0f1b2c3d4e5f", Method: "GET", Path: "/orders/42", Host: "orders.internal",
			Scheme: "http", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": "orders.internal", ":method": "GET", ":path": "/orders/42", ":scheme": "http",
				"accept": "application/json", "user-agent": "talos-bench/1", "x-request-id": "6c5a3d9e-1b2f-4c8d-9e7a-0f1b2c3d4e5f",
				"x-forwarded-proto": "http", "x-api-key": cred,
			},
		}},
	}}
}

// checkRequests builds one request per credential.
func checkRequests(creds []string) []*authv3.CheckRequest {
	out := make([]*authv3.CheckRequest, len(creds))
	for i, c := range creds {
		out[i] = checkRequest(c)
	}
	return out
}

// deniedError fails a request that should have been allowed.
type deniedError struct{ status int }

func (e deniedError) Error() string { return "denied with HTTP status " + strconv.Itoa(e.status) }

// checkOp checks reqs[seq] (unique: each once, then errExhausted) or
// reqs[seq mod len] (cycling), spreading the calls over the connections.
// With wantAllow, any answer but OK is an error.
func checkOp(c *checkClient, reqs []*authv3.CheckRequest, unique, wantAllow bool) op {
	n := uint64(len(reqs))
	return func(ctx context.Context, seq uint64) (int, error) {
		if unique && seq >= n {
			return 0, errExhausted
		}
		resp, err := c.clients[seq%uint64(len(c.clients))].Check(ctx, reqs[seq%n])
		if err != nil {
			return 0, err
		}
		if wantAllow && codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			return 0, deniedError{int(resp.GetDeniedResponse().GetStatus().GetCode())}
		}
		return 0, nil
	}
}

// newHTTPClient keeps up to conns idle keep-alive connections per host.
func newHTTPClient(conns int) *http.Client { return newTLSHTTPClient(conns, nil) }

// newTLSHTTPClient is newHTTPClient with the TLS settings of cfg for https
// URLs. It speaks HTTP/1.1 over TLS too (no ALPN h2), as over plaintext.
func newTLSHTTPClient(conns int, cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
		DisableCompression: true, ForceAttemptHTTP2: false, TLSClientConfig: cfg,
	}, Timeout: 30 * time.Second}
}

// httpCheckOp is checkOp for HTTP authorization mode (nginx auth_request,
// forward-auth, Envoy http_service): GET base/orders/42 with the credential
// in x-api-key; 200 allows.
func httpCheckOp(hc *http.Client, base string, creds []string, unique, wantAllow bool) op {
	n := uint64(len(creds))
	url := base + "/orders/42"
	return func(ctx context.Context, seq uint64) (int, error) {
		if unique && seq >= n {
			return 0, errExhausted
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header["X-Api-Key"] = []string{creds[seq%n]}
		req.Header["Accept"] = []string{"application/json"}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if wantAllow && resp.StatusCode != http.StatusOK {
			return 0, deniedError{resp.StatusCode}
		}
		return 0, nil
	}
}

// adminClient calls the control plane's HTTP/JSON admin API. Safe for
// concurrent use.
type adminClient struct {
	base string
	hc   *http.Client
	// token is sent as a bearer token when set.
	token string
}

func newAdminClient(base string, conns int) *adminClient {
	return &adminClient{base: base, hc: newHTTPClient(conns)}
}

// call POSTs in as JSON to path and decodes a response with status want
// into out (when not nil).
func (a *adminClient) call(ctx context.Context, path string, in any, want int, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: status %d: %.300s", path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

type issueRequest struct {
	Name       string      `json:"name"`
	ActorID    string      `json:"actor_id"`
	Scopes     []string    `json:"scopes"`
	RatePolicy *ratePolicy `json:"rate_limit_policy,omitempty"`
}

// ratePolicy is a key's rate_limit_policy.
type ratePolicy struct {
	Quota  int64  `json:"quota"`
	Window string `json:"window"`
}

type issueResponse struct {
	IssuedAPIKey struct {
		KeyID string `json:"key_id"`
	} `json:"issued_api_key"`
	Secret string `json:"secret"`
}

// issue issues a key and returns its secret.
func (a *adminClient) issue(ctx context.Context) (string, error) {
	return a.issueWith(ctx, nil)
}

// issueWith issues a key with the rate-limit policy pol (nil: none).
func (a *adminClient) issueWith(ctx context.Context, pol *ratePolicy) (string, error) {
	var out issueResponse
	err := a.call(ctx, "/v2alpha1/admin/issuedApiKeys", issueRequest{Name: "bench", ActorID: "bench-actor", Scopes: []string{"orders:read"}, RatePolicy: pol}, http.StatusCreated, &out)
	if err == nil && (out.Secret == "" || out.IssuedAPIKey.KeyID == "") {
		err = errors.New("issue: no secret or key ID in the response")
	}
	return out.Secret, err
}

// revoke revokes the issued key whose secret is cred. The key ID is read
// back through verify, so callers need keep only secrets.
func (a *adminClient) revoke(ctx context.Context, cred string) error {
	id, err := a.verify(ctx, cred)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("revoke: the key does not verify")
	}
	return a.call(ctx, "/v2alpha1/admin/issuedApiKeys/"+id+":revoke", map[string]string{"reason": "REVOCATION_REASON_KEY_COMPROMISE"}, http.StatusNoContent, nil)
}

// verify returns the key ID of a valid credential and "" for an invalid
// one.
func (a *adminClient) verify(ctx context.Context, cred string) (string, error) {
	var out struct {
		IsValid bool   `json:"is_valid"`
		KeyID   string `json:"key_id"`
	}
	if err := a.call(ctx, "/v2alpha1/admin/apiKeys:verify", map[string]string{"credential": cred}, http.StatusOK, &out); err != nil {
		return "", err
	}
	if !out.IsValid {
		return "", nil
	}
	return out.KeyID, nil
}

// derive mints a derived JWT from cred.
func (a *adminClient) derive(ctx context.Context, cred string) (string, error) {
	var out struct {
		Token struct {
			Token string `json:"token"`
		} `json:"token"`
	}
	if err := a.call(ctx, "/v2alpha1/admin/apiKeys:derive", map[string]string{"credential": cred}, http.StatusOK, &out); err != nil {
		return "", err
	}
	if out.Token.Token == "" {
		return "", errors.New("derive: no token in the response")
	}
	return out.Token.Token, nil
}

// importBatchSize is the control plane's limit per importedApiKeys:batchCreate.
const importBatchSize = 1000

// importKeys imports raw keys in batches.
func (a *adminClient) importKeys(ctx context.Context, raw []string) error {
	type item struct {
		RawKey  string   `json:"raw_key"`
		Name    string   `json:"name"`
		ActorID string   `json:"actor_id"`
		Scopes  []string `json:"scopes"`
	}
	var out struct {
		SuccessCount int `json:"success_count"`
		FailureCount int `json:"failure_count"`
		Results      []struct {
			ErrorMessage string `json:"error_message"`
		} `json:"results"`
	}
	items := make([]item, len(raw))
	for i, k := range raw {
		items[i] = item{RawKey: k, Name: "bench", ActorID: "bench-actor", Scopes: []string{"orders:read"}}
	}
	if err := a.call(ctx, "/v2alpha1/admin/importedApiKeys:batchCreate", map[string]any{"requests": items}, http.StatusOK, &out); err != nil {
		return err
	}
	if out.FailureCount > 0 || out.SuccessCount != len(raw) {
		msg := ""
		for _, r := range out.Results {
			if r.ErrorMessage != "" {
				msg = r.ErrorMessage
				break
			}
		}
		return fmt.Errorf("import: %d of %d failed: %s", out.FailureCount, len(raw), msg)
	}
	return nil
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the
// first error.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// setupConcurrency is the number of concurrent calls that issue keys and
// derive tokens before a measurement (PostgreSQL commits scale with it up
// to about this; SQLite's do not).
const setupConcurrency = 64

// issueKeys issues n keys.
func (a *adminClient) issueKeys(ctx context.Context, n int) ([]string, error) {
	return a.issueKeysWith(ctx, n, nil)
}

// issueKeysWith issues n keys with the rate-limit policy pol.
func (a *adminClient) issueKeysWith(ctx context.Context, n int, pol *ratePolicy) ([]string, error) {
	out := make([]string, n)
	err := parallel(ctx, n, setupConcurrency, func(ctx context.Context, i int) error {
		s, err := a.issueWith(ctx, pol)
		out[i] = s
		return err
	})
	return out, err
}

// deriveTokens derives n JWTs, cycling over the parent credentials.
func (a *adminClient) deriveTokens(ctx context.Context, parents []string, n int) ([]string, error) {
	out := make([]string, n)
	err := parallel(ctx, n, setupConcurrency, func(ctx context.Context, i int) error {
		t, err := a.derive(ctx, parents[i%len(parents)])
		out[i] = t
		return err
	})
	return out, err
}

// importedKeys returns n distinct random raw keys (the shape of a key some
// other system issued) and imports them.
func (a *adminClient) importedKeys(ctx context.Context, n int) ([]string, error) {
	raw := rawKeys(n)
	return raw, a.importAll(ctx, raw)
}

// rawKeys returns n distinct random raw keys.
func rawKeys(n int) []string {
	raw := make([]string, n)
	b := make([]byte, 24)
	for i := range raw {
		_, _ = rand.Read(b)
		raw[i] = "legacy_" + hex.EncodeToString(b)
	}
	return raw
}

// importAll imports raw keys in batches, two calls at a time.
func (a *adminClient) importAll(ctx context.Context, raw []string) error {
	n := len(raw)
	batches := (n + importBatchSize - 1) / importBatchSize
	return parallel(ctx, batches, 2, func(ctx context.Context, i int) error {
		return a.importKeys(ctx, raw[i*importBatchSize:min(n, (i+1)*importBatchSize)])
	})
}

// metrics is one scrape of a Prometheus text exposition: sample line
// (name and labels) -> value.
type metrics map[string]float64

func scrape(ctx context.Context, base string) (metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: status %d", base, resp.StatusCode)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum adds the samples of family name whose labels include every pair
// given (`k="v"`).
func (m metrics) sum(name string, labels ...string) float64 {
	var total float64
next:
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue next
			}
		}
		total += v
	}
	return total
}

// sidecarSources are the sidecar counters that say where verdicts came
// from.
var sidecarSources = []struct {
	name, family string
	labels       []string
}{
	{"l1_hits", "talos_proxy_cache_lookups_total", []string{`layer="memory"`, `result="hit"`}},
	{"l1_misses", "talos_proxy_cache_lookups_total", []string{`layer="memory"`, `result="miss"`}},
	{"redis_hits", "talos_proxy_cache_lookups_total", []string{`layer="redis"`, `result="hit"`}},
	{"redis_misses", "talos_proxy_cache_lookups_total", []string{`layer="redis"`, `result="miss"`}},
	{"redis_errors", "talos_proxy_cache_lookups_total", []string{`layer="redis"`, `result="error"`}},
	{"jwt_local", "talos_proxy_jwt_local_verifications_total", nil},
	{"upstream_calls", "talos_proxy_upstream_calls_total", nil},
	{"upstream_errors", "talos_proxy_upstream_errors_total", nil},
	{"ratelimit_allowed", "talos_ratelimit_decisions_total", []string{`where="sidecar"`, `result="allowed"`}},
	{"ratelimit_limited", "talos_ratelimit_decisions_total", []string{`where="sidecar"`, `result="limited"`}},
	{"ratelimit_errors", "talos_ratelimit_decisions_total", []string{`where="sidecar"`, `result="error"`}},
}

// sourceDelta returns how the sidecar counters moved from a to b.
func sourceDelta(a, b metrics) map[string]float64 {
	out := map[string]float64{}
	for _, s := range sidecarSources {
		out[s.name] = b.sum(s.family, s.labels...) - a.sum(s.family, s.labels...)
	}
	return out
}
