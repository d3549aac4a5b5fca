package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// runTalos runs `talos args...` with environ and returns its output and the
// exit code main would exit with.
func runTalos(t *testing.T, environ []string, args ...string) (stdout, stderr string, code int, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), args, environ, &out, &errOut)
	return out.String(), errOut.String(), exitCodeOf(err), err
}

// TestCLI_UsageExitCodes: unknown subcommands, stray arguments and bad flags
// exit 2 (cobra alone prints the help and exits 0 for a group command), and
// a bare group still prints its help with 0.
func TestCLI_UsageExitCodes(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	environ := []string{envEndpoint + "=" + f.srv.URL}
	for _, tc := range []struct {
		args []string
		code int
		want string // in the error, or in stdout for code 0
	}{
		{[]string{"keys", "lst"}, exitUsage, `unknown command "lst" for "talos keys"`},
		{[]string{"keys", "issued", "frobnicate"}, exitUsage, `unknown command "frobnicate" for "talos keys issued"`},
		{[]string{"keys", "imported", "rotate"}, exitUsage, `unknown command "rotate" for "talos keys imported"`},
		{[]string{"jwk", "nope"}, exitUsage, `unknown command "nope" for "talos jwk"`},
		{[]string{"token", "nope"}, exitUsage, `unknown command "nope" for "talos token"`},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate" for "talos"`},
		{[]string{"keys", "lsit"}, exitUsage, "Did you mean this?\n\tlist"},
		{[]string{"keys", "list", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"keys", "get"}, exitUsage, "accepts 1 arg(s)"},
		{[]string{"keys", "issue", "ci"}, exitUsage, `required flag(s) "actor" not set`},
		{[]string{"keys", "list", "--status", "sleepy"}, exitUsage, "invalid --status"},
		{[]string{"keys", "issued", "get", "--imported", testImported}, exitUsage, `--imported is implied by "talos keys issued"`},
		{[]string{"version", "extra"}, exitUsage, `unknown command "extra" for "talos version"`},
		{[]string{"inject", "extra"}, exitUsage, `unknown command "extra" for "talos inject"`},
		{[]string{"keys"}, exitOK, "Available Commands"},
		{[]string{"keys", "issued"}, exitOK, "Available Commands"},
		{[]string{"--help"}, exitOK, "Exit codes:\n  0  success"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, _, code, err := runTalos(t, environ, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d (error %v), want %d", code, err, tc.code)
			}
			got := stdout
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output %q does not contain %q", got, tc.want)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
}

// TestCLI_ServerAnswerExitCodes: what the server answers decides the code,
// and auth and transport errors say what to do.
func TestCLI_ServerAnswerExitCodes(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	envelope := func(code int, status string) string {
		return `{"error":{"code":` + itoa(code) + `,"message":"m","status":"` + status + `"}}`
	}
	f.answer(t, "GET", pathIssued+"/"+testKeyID, http.StatusUnauthorized, envelope(401, "UNAUTHENTICATED"))
	f.answer(t, "GET", pathImported+"/"+testImported, http.StatusForbidden, envelope(403, "PERMISSION_DENIED"))
	f.answer(t, "GET", pathIssued, http.StatusInternalServerError, envelope(500, "INTERNAL"))
	f.answer(t, "GET", pathImported, http.StatusBadRequest, envelope(400, "INVALID_ARGUMENT"))
	f.answer(t, "POST", pathSelfRevoke, http.StatusUnauthorized, `{"error":{"code":401,"message":"m","status":"UNAUTHENTICATED","details":[{"reason":"UNAUTHORIZED"}]}}`)
	f.answer(t, "POST", pathDerive, http.StatusUnauthorized, `{"error":{"code":401,"message":"m","status":"UNAUTHENTICATED","details":[{"reason":"API_KEY_REVOKED"}]}}`)
	f.answer(t, "POST", pathVerify, http.StatusOK, &pb.VerifyApiKeyResponse{ErrorCode: pb.VerificationErrorCode_VERIFICATION_ERROR_REVOKED})
	for _, tc := range []struct {
		name  string
		token bool
		args  []string
		code  int
		hint  string
	}{
		{"401 without a token", false, []string{"get", testKeyID}, exitAuth, "pass --token or set TALOS_ADMIN_TOKEN"},
		{"401 with a token", true, []string{"get", testKeyID}, exitAuth, "check --token or TALOS_ADMIN_TOKEN"},
		{"403", true, []string{"get", "--imported", testImported}, exitAuth, "TALOS_ADMIN_TOKEN"},
		{"500", true, []string{"list"}, exitServer, "failed: retry later"},
		{"400", true, []string{"list", "--imported"}, exitUsage, "HTTP 400"},
		{"404", true, []string{"revoke", testKeyID}, exitNegative, "HTTP 404"},
		{"invalid key", true, []string{"verify", testSecret}, exitNegative, "not valid"},
		{"self-revoke of a refused key", true, []string{"self-revoke", testSecret}, exitNegative, "HTTP 401"},
		{"derive from a revoked key", true, []string{"derive-token", testSecret}, exitNegative, "API_KEY_REVOKED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			environ := []string{envEndpoint + "=" + f.srv.URL}
			if tc.token {
				environ = append(environ, envAdminToken+"="+testToken)
			}
			stdout, _, code, err := runTalos(t, environ, append([]string{"keys"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit code %d (error %v), want %d", code, err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("error %q has no hint %q", err, tc.hint)
			}
			if tc.name == "invalid key" && !strings.Contains(stdout, "VALID\tfalse") && !strings.Contains(stdout, "VALID  ") {
				t.Errorf("verify printed no verdict: %q", stdout)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestCLI_TransportErrorsExit3: a server that is not there, or that drops
// the connection, is exit 3 with a hint at --endpoint.
func TestCLI_TransportErrorsExit3(t *testing.T) {
	t.Parallel()
	// A listener that accepts and closes at once: the request fails in
	// transport. It is held open for the test, so the port stays ours.
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
	for name, endpoint := range map[string]string{
		"connection dropped": "http://" + ln.Addr().String(),
		"connection refused": "http://127.0.0.1:0", // port 0 is never listening
	} {
		t.Run(name, func(t *testing.T) {
			_, _, code, err := runTalos(t, []string{envEndpoint + "=" + endpoint}, "keys", "list")
			if code != exitServer {
				t.Fatalf("exit code %d (error %v), want %d", code, err, exitServer)
			}
			if !strings.Contains(err.Error(), "Set --endpoint or TALOS_ENDPOINT") {
				t.Errorf("error %q has no hint at --endpoint", err)
			}
			_, _, code, err = runTalos(t, nil, "jwk", "get", "--endpoint", endpoint)
			if code != exitServer || !strings.Contains(err.Error(), "Set --endpoint or TALOS_ENDPOINT") {
				t.Errorf("jwk get: exit code %d (error %v), want %d with a hint", code, err, exitServer)
			}
		})
	}
}

// TestCLI_Formats: yaml, json-pretty, jsonpath and --quiet over the same
// answer.
func TestCLI_Formats(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	k2 := testIssuedKey()
	k2.KeyId = "0b9e6679-7425-40de-944b-e07fc1f90ae8"
	f.answer(t, "GET", pathIssued, http.StatusOK, &pb.ListIssuedApiKeysResponse{IssuedApiKeys: []*pb.IssuedApiKey{testIssuedKey(), k2}})
	f.answer(t, "POST", pathIssued, http.StatusOK, &pb.IssueApiKeyResponse{IssuedApiKey: testIssuedKey(), Secret: testSecret})
	f.answer(t, "POST", pathIssued+"/"+testKeyID+":rotate", http.StatusOK, &pb.RotateIssuedApiKeyResponse{IssuedApiKey: k2, OldIssuedApiKey: testIssuedKey(), Secret: testSecret})

	t.Run("yaml", func(t *testing.T) {
		res := f.runKeys(t, "list", "--format", "yaml")
		var got struct {
			IssuedAPIKeys []struct {
				KeyID string `json:"key_id"`
			} `json:"issued_api_keys"`
		}
		if err := yaml.UnmarshalStrict([]byte(res.stdout), &got, yaml.DisallowUnknownFields); err != nil && !strings.Contains(err.Error(), "unknown field") {
			t.Fatalf("%v: not YAML: %v\n%s", res.err, err, res.stdout)
		}
		if len(got.IssuedAPIKeys) != 2 || got.IssuedAPIKeys[1].KeyID != k2.KeyId || !strings.HasPrefix(res.stdout, "issued_api_keys:\n") {
			t.Errorf("yaml output:\n%s", res.stdout)
		}
	})
	t.Run("json-pretty", func(t *testing.T) {
		res := f.runKeys(t, "list", "-o", "json-pretty")
		var got map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || !strings.Contains(res.stdout, "\n  ") {
			t.Errorf("%v %v: %q", res.err, err, res.stdout)
		}
	})
	t.Run("jsonpath", func(t *testing.T) {
		res := f.runKeys(t, "list", "-o", "jsonpath={.issued_api_keys[*].key_id}")
		if res.err != nil || res.stdout != testKeyID+" "+k2.KeyId+"\n" {
			t.Errorf("%v: %q", res.err, res.stdout)
		}
		res = f.runKeys(t, "list", "-o", "jsonpath={.nothing}")
		if code := exitCodeOf(res.err); code != exitUsage || !strings.Contains(res.err.Error(), "nothing is not found") {
			t.Errorf("a path that matches nothing: exit %d, %v", code, res.err)
		}
		res = f.runKeys(t, "issue", "ci", "--actor", "a", "--format", "jsonpath=.secret")
		if res.err != nil || res.stdout != testSecret+"\n" {
			t.Errorf("%v: %q", res.err, res.stdout)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"list", "-q"}, testKeyID + "\n" + k2.KeyId + "\n"},
			{[]string{"issue", "ci", "--actor", "a", "--quiet"}, testKeyID + "\n" + testSecret + "\n"},
			{[]string{"rotate", testKeyID, "-q"}, k2.KeyId + "\n" + testSecret + "\n"},
		} {
			res := f.runKeys(t, tc.args...)
			if res.err != nil || res.stdout != tc.want {
				t.Errorf("keys %v: %v: %q, want %q", tc.args, res.err, res.stdout, tc.want)
			}
			if strings.Contains(tc.args[0], "issue") && !strings.Contains(res.stderr, secretWarning) {
				t.Errorf("keys %v: no secret warning on stderr", tc.args)
			}
		}
	})
}

// pagedAPI answers the issued list in three pages, and records the
// Cache-Control of verify requests.
type pagedAPI struct {
	srv     *httptest.Server
	mu      sync.Mutex
	tokens  []string
	noCache []string
}

func newPagedAPI(t *testing.T) *pagedAPI {
	a := &pagedAPI{}
	pages := map[string]*pb.ListIssuedApiKeysResponse{}
	var prev string
	for i, id := range []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"} {
		next := ""
		if i < 2 {
			next = "page" + itoa(i+1)
		}
		pages[prev] = &pb.ListIssuedApiKeysResponse{IssuedApiKeys: []*pb.IssuedApiKey{{KeyId: id, Name: "k"}}, NextPageToken: next}
		prev = next
	}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		switch r.URL.Path {
		case pathIssued:
			tok := r.URL.Query().Get("page_token")
			a.tokens = append(a.tokens, tok)
			b, _ := marshalRequest.Marshal(pages[tok])
			_, _ = w.Write(b)
		case pathVerify:
			a.noCache = append(a.noCache, r.Header.Get("Cache-Control"))
			_, _ = w.Write([]byte(`{"is_valid":true,"key_id":"` + testKeyID + `"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func TestCLI_ListAllFollowsPageTokens(t *testing.T) {
	t.Parallel()
	a := newPagedAPI(t)
	environ := []string{envEndpoint + "=" + a.srv.URL}
	stdout, _, code, err := runTalos(t, environ, "keys", "list", "--all", "-q")
	want := "00000000-0000-4000-8000-000000000001\n00000000-0000-4000-8000-000000000002\n00000000-0000-4000-8000-000000000003\n"
	if code != 0 || stdout != want {
		t.Fatalf("list --all: %v: %q, want %q", err, stdout, want)
	}
	stdout, stderr, _, _ := runTalos(t, environ, "keys", "list")
	if strings.Count(stdout, "\n") != 2 || !strings.Contains(stderr, "--page-token page1") {
		t.Errorf("list without --all: %q, %q", stdout, stderr)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if got := strings.Join(a.tokens, ","); got != ",page1,page2," {
		t.Errorf("page tokens sent: %q", got)
	}
}

func TestCLI_VerifyNoCache(t *testing.T) {
	t.Parallel()
	a := newPagedAPI(t)
	environ := []string{envEndpoint + "=" + a.srv.URL}
	for _, args := range [][]string{{"keys", "verify", testSecret}, {"keys", "verify", "--no-cache", testSecret}} {
		if _, _, code, err := runTalos(t, environ, args...); code != 0 {
			t.Fatalf("%v: %v", args, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if got := strings.Join(a.noCache, ","); got != ",no-cache" {
		t.Errorf("Cache-Control sent: %q, want none, then no-cache", got)
	}
}

func TestCLI_Version(t *testing.T) {
	old := [3]string{version, commit, date}
	t.Cleanup(func() { version, commit, date = old[0], old[1], old[2] })
	version, commit, date = "v9.8.7", "0123456789abcdef", "2026-12-04T21:00:00Z"
	stdout, _, code, err := runTalos(t, nil, "version", "--format", "json")
	if code != 0 {
		t.Fatal(err)
	}
	var got buildInfo
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	want := buildInfo{Version: "v9.8.7", Commit: "0123456789abcdef", Date: "2026-12-04T21:00:00Z", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if got != want {
		t.Errorf("version --format json = %+v, want %+v", got, want)
	}
	stdout, _, _, _ = runTalos(t, nil, "version")
	for _, s := range []string{"talos v9.8.7", "commit:   0123456789abcdef", "built:    2026-12-04T21:00:00Z", "go:       " + runtime.Version()} {
		if !strings.Contains(stdout, s) {
			t.Errorf("version output %q lacks %q", stdout, s)
		}
	}
	if stdout, _, code, _ := runTalos(t, nil, "--version"); code != 0 || stdout != "talos v9.8.7\n" {
		t.Errorf("talos --version: %d %q", code, stdout)
	}
	// Without ldflags the fields still say something.
	version, commit, date = "", "", ""
	if bi := currentBuild(); bi.Version == "" || bi.Commit == "" || bi.Date == "" || bi.GoVersion == "" {
		t.Errorf("fallback build info has empty fields: %+v", bi)
	}
}

// TestE2E_OryCLIForms runs Ory Talos's command forms against a real control
// plane: every form works, and the exit codes hold for real answers.
func TestE2E_OryCLIForms(t *testing.T) {
	const adminToken = "cli-forms-admin-token-long-enough-0123456789"
	srv := startServer(t, "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS="+adminToken)
	environ := []string{envEndpoint + "=" + srv.http, envAdminToken + "=" + adminToken}
	talos := func(wantCode int, args ...string) string {
		t.Helper()
		stdout, _, code, err := runTalos(t, environ, args...)
		if code != wantCode {
			t.Fatalf("talos %s: exit code %d (%v), want %d\n%s", strings.Join(args, " "), code, err, wantCode, stdout)
		}
		return stdout
	}
	lines := func(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

	// Issued keys.
	out := lines(talos(0, "keys", "issued", "create", "ci", "--actor", "alice", "--scopes", "read,write", "-q"))
	if len(out) != 2 {
		t.Fatalf("issued create -q: %q", out)
	}
	id, secret := out[0], out[1]
	if got := talos(0, "keys", "issued", "get", id, "-o", "jsonpath={.name}"); got != "ci\n" {
		t.Errorf("issued get: %q", got)
	}
	if got := talos(0, "keys", "issued", "list", "--all", "-q"); got != id+"\n" {
		t.Errorf("issued list: %q", got)
	}
	talos(0, "keys", "issued", "update", id, "--name", "ci-2")
	talos(0, "keys", "verify", "--no-cache", secret)
	if got := talos(exitNegative, "keys", "batch-verify", "--no-cache", secret, "not-a-key", "-q"); got != id+"\n-\n" {
		t.Errorf("batch-verify -q: %q", got)
	}
	tok := talos(0, "keys", "derive-token", secret, "--algorithm", "jwt", "--ttl", "5m", "-q")
	if strings.Count(tok, ".") != 2 {
		t.Errorf("derive-token -q printed %q, want a JWT", tok)
	}
	talos(0, "keys", "verify", strings.TrimSpace(tok))
	out = lines(talos(0, "keys", "issued", "rotate", id, "-q"))
	if len(out) != 2 || out[0] == id {
		t.Fatalf("issued rotate -q: %q", out)
	}
	newID, newSecret := out[0], out[1]
	talos(exitNegative, "keys", "verify", secret) // rotated without grace: revoked
	talos(0, "keys", "issued", "revoke", newID, "--reason", "superseded", "--reason-text", "")
	talos(exitNegative, "keys", "verify", newSecret)
	// A revoked parent is 403 FORBIDDEN, which the CLI cannot tell from a
	// refused admin token (docs/cli.md).
	talos(exitAuth, "keys", "derive-token", newSecret)
	talos(exitNegative, "keys", "issued", "get", "00000000-0000-4000-8000-000000000000")

	// Imported keys.
	const raw = "sk_live_cli_forms_0123456789abcdef"
	imp := strings.TrimSpace(talos(0, "keys", "imported", "create", "legacy", "--raw-key", raw, "--actor", "bob", "-q"))
	if got := talos(0, "keys", "imported", "get", imp, "-o", "yaml"); !strings.Contains(got, "name: legacy") {
		t.Errorf("imported get -o yaml: %q", got)
	}
	if got := talos(0, "keys", "imported", "list", "-q"); got != imp+"\n" {
		t.Errorf("imported list: %q", got)
	}
	talos(0, "keys", "imported", "update", imp, "--scopes", "read")
	talos(0, "keys", "verify", raw)
	talos(0, "keys", "imported", "revoke", imp, "--reason", "superseded")
	talos(exitNegative, "keys", "verify", raw)
	talos(0, "keys", "imported", "delete", imp)
	talos(exitNegative, "keys", "imported", "get", imp)
	file := filepath.Join(t.TempDir(), "batch.json")
	if err := os.WriteFile(file, []byte(`[{"raw_key":"sk_live_cli_batch_0123456789","name":"b","actor_id":"carol"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := talos(0, "keys", "imported", "batch-import", "--file", file, "-q"); len(lines(got)) != 1 || len(lines(got)[0]) != 64 {
		t.Errorf("imported batch-import -q: %q", got)
	}

	// The real server's refusals.
	_, _, code, err := runTalos(t, []string{envEndpoint + "=" + srv.http}, "keys", "list")
	if code != exitAuth || !strings.Contains(err.Error(), "pass --token or set TALOS_ADMIN_TOKEN") {
		t.Errorf("list without a token: exit %d, %v", code, err)
	}
	_, _, code, err = runTalos(t, []string{envEndpoint + "=" + srv.http, envAdminToken + "=wrong-token"}, "keys", "list")
	if code != exitAuth || !strings.Contains(err.Error(), "check --token or TALOS_ADMIN_TOKEN") {
		t.Errorf("list with a wrong token: exit %d, %v", code, err)
	}
}
