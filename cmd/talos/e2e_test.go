package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ory "github.com/ory/client-go"
)

// logSink collects the process's log lines and lets a test wait for one.
type logSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []map[string]any
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			l.lines = append(l.lines, m)
		}
	}
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitAddr polls the log until a line with msg carries an addr.
func (l *logSink) waitAddr(t *testing.T, msg string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, m := range l.lines {
			if m["msg"] == msg {
				if a, ok := m["addr"].(string); ok {
					l.mu.Unlock()
					return a
				}
			}
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q log line within 30s; log:\n%s", msg, l.String())
	return ""
}

type testServer struct {
	http    string // base URL of the HTTP API
	grpc    string
	metrics string
	log     *logSink
}

// startServer runs `talos serve` through run() on ephemeral ports and a
// temp-dir SQLite database, and stops it when the test ends.
func startServer(t *testing.T, extraEnv ...string) *testServer {
	t.Helper()
	return startServerMode(t, "", extraEnv...)
}

// startServerMode is startServer for `serve admin` or `serve public`.
func startServerMode(t *testing.T, mode string, extraEnv ...string) *testServer {
	t.Helper()
	args := []string{"serve"}
	if mode != "" {
		args = append(args, mode)
	}
	s, _ := launchServer(t, args, append(serverEnv(t.TempDir(), "0"), extraEnv...))
	return s
}

// serverEnv is the environment of a test control plane on the SQLite
// database in dir, on ephemeral ports but for the gRPC port given ("0": any).
func serverEnv(dir, grpcPort string) []string {
	return []string{
		"TALOS_SERVE_HTTP_HOST=127.0.0.1", "TALOS_SERVE_HTTP_PORT=0",
		"TALOS_SERVE_GRPC_HOST=127.0.0.1", "TALOS_SERVE_GRPC_PORT=" + grpcPort,
		"TALOS_SERVE_METRICS_HOST=127.0.0.1", "TALOS_SERVE_METRICS_PORT=0",
		"TALOS_CREDENTIALS_ISSUER=http://talos.test",
		"TALOS_SECRETS_HMAC_CURRENT=e2e-secret-that-is-long-enough-0123456789",
		"TALOS_DB_DSN=sqlite://" + filepath.Join(dir, "talos.db"),
		"TALOS_LOG_LEVEL=debug",
		// No drain on stop (tests of the drain set their own), for the
		// control plane and an embedded sidecar (--with-proxy).
		"TALOS_SERVE_SHUTDOWN_DRAIN_DELAY=0s", "TALOS_PROXY_SHUTDOWN_DRAIN_DELAY=0s",
	}
}

// launchServer runs `talos <args>` through run() and waits for its listeners.
// The returned stop shuts it down and waits; it also runs at cleanup.
func launchServer(t *testing.T, args, env []string) (*testServer, func()) {
	t.Helper()
	s, proc := launchServerProcess(t, args, env)
	return s, func() {
		proc.stop()
		if ok, _ := proc.wait(30 * time.Second); !ok { // its error is reported at cleanup
			t.Error("serve did not stop within 30s")
		}
	}
}

// launchServerProcess is launchServer that returns the process, to stop it
// (as SIGTERM would) without waiting.
func launchServerProcess(t *testing.T, args, env []string) (*testServer, *process) {
	t.Helper()
	sink := &logSink{}
	proc := startProcess(t, "serve", args, env, sink)
	s := &testServer{log: sink}
	s.http = "http://" + sink.waitAddr(t, "HTTP server started")
	s.grpc = sink.waitAddr(t, "gRPC server started")
	s.metrics = "http://" + sink.waitAddr(t, "Metrics server started")
	return s, proc
}

// process is a `talos` command run through run() in a goroutine: stop ends
// its context, as the first SIGTERM does.
type process struct {
	stop context.CancelFunc
	done chan struct{} // closed once run returned
	err  error         // what run returned, once done
}

// startProcess runs `talos <args>`, its log into sink. At cleanup it is
// stopped and waited for (30s at most), and its error, if any, reported.
func startProcess(t *testing.T, name string, args, env []string, sink *logSink) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{stop: cancel, done: make(chan struct{})}
	go func() {
		p.err = run(ctx, args, env, io.Discard, sink)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		if ok, err := p.wait(30 * time.Second); !ok {
			t.Errorf("%s did not stop within 30s", name)
		} else if err != nil {
			t.Errorf("%s returned %v", name, err)
		}
	})
	return p
}

// wait waits up to d for run to return; ok is false if it has not.
func (p *process) wait(d time.Duration) (ok bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

func sdk(base string) *ory.APIClient {
	cfg := ory.NewConfiguration()
	cfg.Servers = ory.ServerConfigurations{{URL: base}}
	cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	return ory.NewAPIClient(cfg)
}

func ptr[T any](v T) *T { return &v }

func mustOK[T any](t *testing.T, what string, v T, resp *http.Response, err error) T {
	t.Helper()
	if err != nil {
		var body string
		var oe *ory.GenericOpenAPIError
		if errors.As(err, &oe) {
			body = string(oe.Body())
		}
		t.Fatalf("%s: %v %s", what, err, body)
	}
	_ = resp
	return v
}

func verify(t *testing.T, c *ory.APIClient, cred string) *ory.VerifyApiKeyResponse {
	t.Helper()
	v, resp, err := c.ApiKeysAPI.AdminVerifyApiKey(t.Context()).VerifyApiKeyRequest(ory.VerifyApiKeyRequest{Credential: &cred}).Execute()
	return mustOK(t, "verify", v, resp, err)
}

func wantVerdict(t *testing.T, c *ory.APIClient, cred string, valid bool, code ory.VerificationErrorCode) *ory.VerifyApiKeyResponse {
	t.Helper()
	v := verify(t, c, cred)
	if v.GetIsValid() != valid || (!valid && v.GetErrorCode() != code) {
		t.Fatalf("verify: is_valid=%v error_code=%v, want %v %v", v.GetIsValid(), v.GetErrorCode(), valid, code)
	}
	return v
}

// TestE2E_KeyLifecycleWithOrySDK drives a real `talos serve` over real sockets
// with the official Ory Go SDK through the whole key lifecycle, on every
// backend, then checks that no issued secret ever reached the log.
func TestE2E_KeyLifecycleWithOrySDK(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testLifecycle(t, startServer(t, b.env...)) })
	}
}

func testLifecycle(t *testing.T, srv *testServer) {
	c := sdk(srv.http)
	ctx := t.Context()
	var secrets []string

	// Issue.
	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(ctx).IssueApiKeyRequest(ory.IssueApiKeyRequest{
		Name: ptr("ci"), ActorId: ptr("svc-build"), Scopes: []string{"read", "write"},
		Metadata:        map[string]any{"team": "platform"},
		IpRestriction:   &ory.IPRestriction{AllowedCidrs: []string{"127.0.0.0/8", "::1/128"}},
		RateLimitPolicy: &ory.RateLimitPolicy{Quota: ptr("100"), Window: ptr("60s")},
		Ttl:             ptr("24h"),
	}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("issue status = %d, want 201", resp.StatusCode)
	}
	secret := issued.GetSecret()
	secrets = append(secrets, secret)
	keyID := issued.IssuedApiKey.GetKeyId()
	if secret == "" || keyID == "" || issued.IssuedApiKey.GetStatus() != ory.KEYSTATUS_KEY_STATUS_ACTIVE {
		t.Fatalf("issue response = %+v", issued)
	}

	// Verify.
	v := wantVerdict(t, c, secret, true, "")
	if v.GetKeyId() != keyID || v.GetActorId() != "svc-build" || v.Metadata["team"] != "platform" || v.GetIssuer() != "http://talos.test" {
		t.Fatalf("verify response = %+v", v)
	}

	// Get, list, update.
	got, resp, err := c.ApiKeysAPI.AdminGetIssuedApiKey(ctx, keyID).Execute()
	got = mustOK(t, "get", got, resp, err)
	if got.GetName() != "ci" || got.RateLimitPolicy.GetQuota() != "100" {
		t.Fatalf("get = %+v", got)
	}
	list, resp, err := c.ApiKeysAPI.AdminListIssuedApiKeys(ctx).Filter(`actor_id="svc-build"`).Execute()
	list = mustOK(t, "list", list, resp, err)
	if len(list.IssuedApiKeys) != 1 {
		t.Fatalf("list = %d keys, want 1", len(list.IssuedApiKeys))
	}
	upd, resp, err := c.ApiKeysAPI.AdminUpdateIssuedApiKey(ctx, keyID).UpdateMask("name,scopes").
		AdminUpdateIssuedApiKeyRequest(ory.AdminUpdateIssuedApiKeyRequest{Name: ptr("ci-renamed"), Scopes: []string{"read"}}).Execute()
	upd = mustOK(t, "update", upd, resp, err)
	if upd.GetName() != "ci-renamed" || len(upd.Scopes) != 1 {
		t.Fatalf("update = %+v", upd)
	}

	// Rotate without grace: the old key dies at once.
	rot, resp, err := c.ApiKeysAPI.AdminRotateIssuedApiKey(ctx, keyID).AdminRotateIssuedApiKeyBody(ory.AdminRotateIssuedApiKeyBody{}).Execute()
	rot = mustOK(t, "rotate", rot, resp, err)
	if resp.StatusCode != http.StatusCreated || rot.OldIssuedApiKey.GetStatus() != ory.KEYSTATUS_KEY_STATUS_REVOKED {
		t.Fatalf("rotate: status %d, old %+v", resp.StatusCode, rot.OldIssuedApiKey)
	}
	secrets = append(secrets, rot.GetSecret())
	wantVerdict(t, c, secret, false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_REVOKED)
	wantVerdict(t, c, rot.GetSecret(), true, "")

	// Rotate with a grace period: both keys work until it ends.
	body := ory.AdminRotateIssuedApiKeyBody{AdditionalProperties: map[string]any{"grace_period": "1h"}}
	rot2, resp, err := c.ApiKeysAPI.AdminRotateIssuedApiKey(ctx, rot.IssuedApiKey.GetKeyId()).AdminRotateIssuedApiKeyBody(body).Execute()
	rot2 = mustOK(t, "rotate with grace", rot2, resp, err)
	secrets = append(secrets, rot2.GetSecret())
	wantVerdict(t, c, rot.GetSecret(), true, "")
	wantVerdict(t, c, rot2.GetSecret(), true, "")
	if rot2.OldIssuedApiKey.ExpireTime == nil || time.Until(*rot2.OldIssuedApiKey.ExpireTime) > time.Hour+time.Minute {
		t.Fatalf("old key after grace rotation expires at %v, want within 1h", rot2.OldIssuedApiKey.ExpireTime)
	}

	// Revoke, then verify says REVOKED.
	resp, err = c.ApiKeysAPI.AdminRevokeIssuedApiKey(ctx, rot2.IssuedApiKey.GetKeyId()).
		AdminRevokeIssuedApiKeyBody(ory.AdminRevokeIssuedApiKeyBody{Reason: ptr(ory.REVOCATIONREASON_REVOCATION_REASON_KEY_COMPROMISE)}).Execute()
	mustOK(t, "revoke", 0, resp, err)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke status = %d, want 204", resp.StatusCode)
	}
	wantVerdict(t, c, rot2.GetSecret(), false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_REVOKED)

	// Import, then batch verify in request order.
	raw := "sk_live_e2e_imported_key_0123456789abcdef"
	secrets = append(secrets, raw)
	imp, resp, err := c.ApiKeysAPI.AdminImportApiKey(ctx).ImportApiKeyRequest(ory.ImportApiKeyRequest{RawKey: &raw, Name: ptr("stripe"), ActorId: ptr("billing")}).Execute()
	imp = mustOK(t, "import", imp, resp, err)
	if resp.StatusCode != http.StatusCreated || len(imp.GetKeyId()) != 64 {
		t.Fatalf("import: status %d, key %+v", resp.StatusCode, imp)
	}
	bv, resp, err := c.ApiKeysAPI.AdminBatchVerifyApiKeys(ctx).BatchVerifyApiKeysRequest(ory.BatchVerifyApiKeysRequest{Requests: []ory.VerifyApiKeyRequest{
		{Credential: &raw}, {Credential: ptr(rot.GetSecret())}, {Credential: ptr("garbage")}, {Credential: ptr(rot2.GetSecret())},
	}}).Execute()
	bv = mustOK(t, "batch verify", bv, resp, err)
	wantBatch := []bool{true, true, false, false}
	for i, r := range bv.Results {
		if r.GetIsValid() != wantBatch[i] {
			t.Errorf("batch result %d is_valid = %v, want %v", i, r.GetIsValid(), wantBatch[i])
		}
	}
	if bv.Results[0].GetKeyId() != imp.GetKeyId() {
		t.Errorf("batch result 0 key = %q, want %q", bv.Results[0].GetKeyId(), imp.GetKeyId())
	}

	// Self-revoke on the public surface, by possession.
	_, resp, err = c.ApiKeysAPI.RevokeApiKey(ctx).SelfRevokeApiKeyRequest(ory.SelfRevokeApiKeyRequest{Credential: &raw, Reason: ptr(ory.REVOCATIONREASON_REVOCATION_REASON_KEY_COMPROMISE)}).Execute()
	mustOK(t, "self-revoke", 0, resp, err)
	wantVerdict(t, c, raw, false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_REVOKED)

	// Imported keys: get, list, delete.
	il, resp, err := c.ApiKeysAPI.AdminListImportedApiKeys(ctx).Execute()
	il = mustOK(t, "list imported", il, resp, err)
	if len(il.ImportedApiKeys) != 1 {
		t.Fatalf("imported list = %d, want 1", len(il.ImportedApiKeys))
	}
	resp, err = c.ApiKeysAPI.AdminDeleteImportedApiKey(ctx, imp.GetKeyId()).Execute()
	mustOK(t, "delete", 0, resp, err)
	_, resp, err = c.ApiKeysAPI.AdminGetImportedApiKey(ctx, imp.GetKeyId()).Execute()
	if err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get deleted: err=%v status=%v, want 404", err, resp)
	}

	// JWKS is served (empty until derived tokens are configured).
	if _, resp, err := c.ApiKeysAPI.GetJwks(ctx).Execute(); err != nil {
		t.Fatalf("jwks: %v (%v)", err, resp)
	}

	if n := strings.Count(srv.log.String(), "HTTP request completed"); n < 20 {
		t.Errorf("only %d requests logged; log:\n%s", n, srv.log.String())
	}
	for _, s := range secrets {
		if strings.Contains(srv.log.String(), s) {
			t.Errorf("a credential appeared in the log")
		}
	}
}
