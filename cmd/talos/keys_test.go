package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/credential"
)

const (
	testKeyID    = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	testSecret   = "talos_v1_3mJr7AoUXx2Wqd_5Hq2fAbCdEfGhJkLmNpQrStUvWxYz"
	testToken    = "admin-token-for-tests"
	testImported = "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358"
)

// fakeAPI is an HTTP server that records requests and answers each
// "METHOD /path" with a canned status and body.
type fakeAPI struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []recordedRequest
	answers map[string]cannedAnswer
}

type recordedRequest struct {
	Method, Path, Auth string
	Query              map[string][]string
	Body               []byte
}

type cannedAnswer struct {
	status int
	body   []byte
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{answers: map[string]cannedAnswer{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recordedRequest{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Query: r.URL.Query(), Body: body})
		a, ok := f.answers[r.Method+" "+r.URL.Path]
		f.mu.Unlock()
		if !ok {
			a = cannedAnswer{http.StatusNotFound, []byte(`{"error":{"code":404,"message":"not found","status":"NOT_FOUND","details":[{"reason":"NOT_FOUND"}]}}`)}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// answer sets the reply to method+path: a proto message (as protojson), a
// string, or nil for no body.
func (f *fakeAPI) answer(t *testing.T, method, path string, status int, body any) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	case proto.Message:
		var err error
		if b, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(v); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("answer: unsupported body %T", body)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+path] = cannedAnswer{status, b}
}

func (f *fakeAPI) requests() []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.reqs...)
}

// only returns the one request the command sent.
func (f *fakeAPI) only(t *testing.T) recordedRequest {
	t.Helper()
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1: %+v", len(reqs), reqs)
	}
	return reqs[0]
}

type keysResult struct {
	stdout, stderr string
	err            error
}

// runKeys runs `talos keys args...` against the fake, with the endpoint and
// the admin token in the environment.
func (f *fakeAPI) runKeys(t *testing.T, args ...string) keysResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	environ := []string{envEndpoint + "=" + f.srv.URL, envAdminToken + "=" + testToken}
	err := run(t.Context(), append([]string{"keys"}, args...), environ, &stdout, &stderr)
	return keysResult{stdout.String(), stderr.String(), err}
}

func mustDecode(t *testing.T, body []byte, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(body, m); err != nil {
		t.Fatalf("request body %s: %v", body, err)
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testIssuedKey() *pb.IssuedApiKey {
	return &pb.IssuedApiKey{
		KeyId: testKeyID, Name: "ci", ActorId: "alice", Scopes: []string{"read", "write"},
		Status: pb.KeyStatus_KEY_STATUS_ACTIVE, Visibility: pb.KeyVisibility_KEY_VISIBILITY_SECRET,
		CreateTime: timestamppb.New(time.Date(2026, 6, 4, 10, 0, 0, 0, time.UTC)),
		ExpireTime: timestamppb.New(time.Date(2026, 6, 5, 10, 0, 0, 0, time.UTC)),
	}
}

func TestKeys_Issue(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.answer(t, "POST", pathIssued, http.StatusCreated, &pb.IssueApiKeyResponse{IssuedApiKey: testIssuedKey(), Secret: testSecret})

	res := f.runKeys(t, "issue", "ci", "--actor", "alice", "--scopes", "read,write", "--ttl", "24h",
		"--metadata", `{"team":"payments","tier":2}`, "--rate-limit-quota", "100", "--rate-limit-window", "1m",
		"--allowed-cidrs", "10.0.0.0/8,2001:db8::/32", "--visibility", "public", "--request-id", "req-1")
	if res.err != nil {
		t.Fatalf("issue: %v\nstderr: %s", res.err, res.stderr)
	}

	req := f.only(t)
	if req.Method != "POST" || req.Path != "/v2alpha1/admin/issuedApiKeys" {
		t.Errorf("request = %s %s, want POST /v2alpha1/admin/issuedApiKeys", req.Method, req.Path)
	}
	if want := "Bearer " + testToken; req.Auth != want {
		t.Errorf("Authorization = %q, want %q", req.Auth, want)
	}
	// The wire uses proto (snake_case) names, as Ory Talos does.
	for _, name := range []string{`"actor_id"`, `"rate_limit_policy"`, `"ip_restriction"`, `"request_id"`} {
		if !bytes.Contains(req.Body, []byte(name)) {
			t.Errorf("body %s lacks %s", req.Body, name)
		}
	}
	var got pb.IssueApiKeyRequest
	mustDecode(t, req.Body, &got)
	want := &pb.IssueApiKeyRequest{
		Name: "ci", ActorId: "alice", Scopes: []string{"read", "write"}, Ttl: "24h",
		Metadata:        mustStruct(t, map[string]any{"team": "payments", "tier": 2}),
		RateLimitPolicy: &pb.RateLimitPolicy{Quota: 100, Window: "1m"},
		IpRestriction:   &pb.IPRestriction{AllowedCidrs: []string{"10.0.0.0/8", "2001:db8::/32"}},
		Visibility:      pb.KeyVisibility_KEY_VISIBILITY_PUBLIC,
		RequestId:       "req-1",
	}
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("issue body (-want +got):\n%s", diff)
	}

	for _, s := range []string{"ID", "EXPIRES", testKeyID, "alice", "active", "read,write", "2026-06-05T10:00:00Z", secretWarning, testSecret} {
		if !strings.Contains(res.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
		}
	}
}

func TestKeys_IssueValidatesLocally(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"no actor":           {"issue", "ci"},
		"bad metadata":       {"issue", "ci", "--actor", "a", "--metadata", "[1]"},
		"bad ttl":            {"issue", "ci", "--actor", "a", "--ttl", "soon"},
		"window, no quota":   {"issue", "ci", "--actor", "a", "--rate-limit-window", "1m"},
		"bad visibility":     {"issue", "ci", "--actor", "a", "--visibility", "hidden"},
		"name twice":         {"issue", "ci", "--name", "other", "--actor", "a"},
		"bad format":         {"issue", "ci", "--actor", "a", "--format", "xml"},
		"jsonpath, no expr":  {"issue", "ci", "--actor", "a", "--format", "jsonpath"},
		"quiet and format":   {"issue", "ci", "--actor", "a", "-q", "-o", "json"},
		"credential as id":   {"get", testSecret},
		"path trick as id":   {"get", "../x"},
		"verb in id":         {"revoke", testKeyID + ":rotate"},
		"update, no changes": {"update", testKeyID},
		"update window only": {"update", testKeyID, "--rate-limit-window", "1m"},
		"rotate clear cidrs": {"rotate", testKeyID, "--allowed-cidrs", ""},
		"bad reason":         {"revoke", testKeyID, "--reason", "bored"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			res := f.runKeys(t, args...)
			if res.err == nil {
				t.Fatalf("keys %v: no error", args)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("keys %v sent %d requests, want none", args, n)
			}
			if code := exitCodeOf(res.err); code != exitUsage {
				t.Errorf("keys %v: exit code %d, want %d (usage)", args, code, exitUsage)
			}
			if strings.Contains(res.err.Error(), testSecret) {
				t.Errorf("error %q echoes the credential", res.err)
			}
		})
	}
}

func TestKeys_Update(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		path     string
		mask     string
		wantBody proto.Message
	}{
		{
			name:     "name and scopes",
			args:     []string{"--name", "renamed", "--scopes", "read"},
			path:     pathIssued + "/" + testKeyID,
			mask:     "name,scopes",
			wantBody: &pb.IssuedApiKey{Name: "renamed", Scopes: []string{"read"}},
		},
		{
			name:     "empty cidrs clear the restriction",
			args:     []string{"--allowed-cidrs", ""},
			path:     pathIssued + "/" + testKeyID,
			mask:     "ip_restriction",
			wantBody: &pb.IssuedApiKey{},
		},
		{
			name:     "rate limit",
			args:     []string{"--rate-limit-quota", "5", "--rate-limit-window", "30s"},
			path:     pathIssued + "/" + testKeyID,
			mask:     "rate_limit_policy",
			wantBody: &pb.IssuedApiKey{RateLimitPolicy: &pb.RateLimitPolicy{Quota: 5, Window: "30s"}},
		},
		{
			name:     "quota 0 clears the rate limit",
			args:     []string{"--rate-limit-quota", "0", "--metadata", `{"a":"b"}`},
			path:     pathIssued + "/" + testKeyID,
			mask:     "metadata,rate_limit_policy",
			wantBody: &pb.IssuedApiKey{Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("b")}}},
		},
		{
			name:     "imported",
			args:     []string{"--imported", "--allowed-cidrs", "192.0.2.0/24"},
			path:     pathImported + "/" + testImported,
			mask:     "ip_restriction",
			wantBody: &pb.ImportedApiKey{IpRestriction: &pb.IPRestriction{AllowedCidrs: []string{"192.0.2.0/24"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			id := testKeyID
			if strings.HasPrefix(tc.path, pathImported) {
				id = testImported
				f.answer(t, "PATCH", tc.path, http.StatusOK, &pb.ImportedApiKey{KeyId: id, Name: "ci", ActorId: "alice"})
			} else {
				f.answer(t, "PATCH", tc.path, http.StatusOK, testIssuedKey())
			}

			res := f.runKeys(t, append([]string{"update", id}, tc.args...)...)
			if res.err != nil {
				t.Fatalf("update: %v", res.err)
			}
			req := f.only(t)
			if req.Method != "PATCH" || req.Path != tc.path {
				t.Errorf("request = %s %s, want PATCH %s", req.Method, req.Path, tc.path)
			}
			if got := req.Query["update_mask"]; len(got) != 1 || got[0] != tc.mask {
				t.Errorf("update_mask = %q, want %q", got, tc.mask)
			}
			got := tc.wantBody.ProtoReflect().New().Interface()
			mustDecode(t, req.Body, got)
			if diff := cmp.Diff(tc.wantBody, got, protocmp.Transform()); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeys_List(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		path       string
		wantFilter string
	}{
		{"actor and status", []string{"--actor", "a", "--status", "revoked"}, pathIssued, `actor_id="a" AND status=KEY_STATUS_REVOKED`},
		{"full enum name", []string{"--status", "KEY_STATUS_ACTIVE"}, pathIssued, `status=KEY_STATUS_ACTIVE`},
		{"quotes escaped", []string{"--actor", `x" OR "y`}, pathIssued, `actor_id="x\" OR \"y"`},
		{"imported", []string{"--imported", "--actor", "bob"}, pathImported, `actor_id="bob"`},
		{"no filter", nil, pathIssued, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.answer(t, "GET", pathIssued, http.StatusOK, &pb.ListIssuedApiKeysResponse{IssuedApiKeys: []*pb.IssuedApiKey{testIssuedKey()}, NextPageToken: "next-1"})
			f.answer(t, "GET", pathImported, http.StatusOK, &pb.ListImportedApiKeysResponse{})

			res := f.runKeys(t, append([]string{"list", "--page-size", "10", "--page-token", "tok"}, tc.args...)...)
			if res.err != nil {
				t.Fatalf("list: %v", res.err)
			}
			req := f.only(t)
			if req.Path != tc.path {
				t.Errorf("path = %s, want %s", req.Path, tc.path)
			}
			want := map[string][]string{"page_size": {"10"}, "page_token": {"tok"}}
			if tc.wantFilter != "" {
				want["filter"] = []string{tc.wantFilter}
			}
			if diff := cmp.Diff(want, req.Query); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if tc.path == pathIssued {
				if !strings.Contains(res.stdout, testKeyID) || !strings.Contains(res.stderr, "--page-token next-1") {
					t.Errorf("stdout %q / stderr %q lack the key or the next page token", res.stdout, res.stderr)
				}
			}
		})
	}
}

func TestKeys_APIError(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.answer(t, "GET", pathIssued+"/"+testKeyID, http.StatusNotFound,
		`{"error":{"code":404,"message":"API key not found","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_NOT_FOUND","domain":"www.ory.com/talos"}]}}`)
	f.answer(t, "POST", pathIssued+"/"+testKeyID+":revoke", http.StatusConflict,
		`{"error":{"code":409,"message":"key is already revoked","status":"FAILED_PRECONDITION","details":[{"reason":"FAILED_PRECONDITION"}]}}`)
	f.answer(t, "GET", pathImported+"/"+testImported, http.StatusBadGateway, `<html>bad gateway</html>`)

	for _, tc := range []struct {
		name    string
		args    []string
		wantMsg string
		wantIs  error
		code    int
	}{
		{"not found", []string{"get", testKeyID}, "talos: API key not found (API_KEY_NOT_FOUND, HTTP 404)", credential.ErrNotFound, exitNegative},
		{"conflict", []string{"revoke", testKeyID, "--reason", "superseded"}, "talos: key is already revoked (FAILED_PRECONDITION, HTTP 409)", credential.ErrFailedPrecondition, exitNegative},
		{"not an envelope", []string{"get", "--imported", testImported}, "talos: bad gateway (HTTP 502)", nil, exitServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.runKeys(t, tc.args...)
			if res.err == nil {
				t.Fatal("no error")
			}
			if got, _, _ := strings.Cut(res.err.Error(), "\n"); got != tc.wantMsg {
				t.Errorf("error = %q, want %q", got, tc.wantMsg)
			}
			if code := exitCodeOf(res.err); code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if tc.wantIs != nil && !errors.Is(res.err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", res.err, tc.wantIs)
			}
		})
	}
}

func TestKeys_Verify(t *testing.T) {
	t.Parallel()
	valid, invalid := true, false
	const badCredential = "talos_v1_revokedkeyrevokedkey_abcdefabcdefabcdef"
	for _, tc := range []struct {
		name      string
		answer    *pb.VerifyApiKeyResponse
		wantErr   bool
		wantInOut []string
	}{
		{
			name:      "valid",
			answer:    &pb.VerifyApiKeyResponse{IsValid: &valid, KeyId: testKeyID, ActorId: "alice", Scopes: []string{"read"}, Status: pb.KeyStatus_KEY_STATUS_ACTIVE},
			wantInOut: []string{"VALID", "true", testKeyID, "alice"},
		},
		{
			name:      "revoked",
			answer:    &pb.VerifyApiKeyResponse{IsValid: &invalid, ErrorCode: pb.VerificationErrorCode_VERIFICATION_ERROR_REVOKED, ErrorMessage: "The API key has been revoked.", KeyId: testKeyID},
			wantErr:   true,
			wantInOut: []string{"false", "revoked: The API key has been revoked."},
		},
		{
			// An absent is_valid means false.
			name:      "is_valid absent",
			answer:    &pb.VerifyApiKeyResponse{ErrorCode: pb.VerificationErrorCode_VERIFICATION_ERROR_NOT_FOUND},
			wantErr:   true,
			wantInOut: []string{"false", "not_found"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.answer(t, "POST", pathVerify, http.StatusOK, tc.answer)

			res := f.runKeys(t, "verify", badCredential)
			if gotErr := res.err != nil; gotErr != tc.wantErr {
				t.Fatalf("verify error = %v, want error %t", res.err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(res.err, errNotValid) {
				t.Errorf("error %v is not errNotValid", res.err)
			}
			var got pb.VerifyApiKeyRequest
			mustDecode(t, f.only(t).Body, &got)
			if got.GetCredential() != badCredential {
				t.Errorf("credential sent = %q, want %q", got.GetCredential(), badCredential)
			}
			for _, s := range tc.wantInOut {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			if strings.Contains(res.stdout+res.stderr, badCredential) || (res.err != nil && strings.Contains(res.err.Error(), badCredential)) {
				t.Error("the credential was printed")
			}
		})
	}
}

func TestKeys_BatchVerify(t *testing.T) {
	t.Parallel()
	valid, invalid := true, false
	f := newFakeAPI(t)
	f.answer(t, "POST", pathBatchVerify, http.StatusOK, &pb.BatchVerifyApiKeysResponse{Results: []*pb.VerifyApiKeyResponse{
		{IsValid: &valid, KeyId: testKeyID},
		{IsValid: &invalid, ErrorCode: pb.VerificationErrorCode_VERIFICATION_ERROR_EXPIRED},
	}})

	res := f.runKeys(t, "batch-verify", "cred-one", "cred-two")
	if !errors.Is(res.err, errNotValid) {
		t.Fatalf("batch-verify error = %v, want errNotValid", res.err)
	}
	var got pb.BatchVerifyApiKeysRequest
	mustDecode(t, f.only(t).Body, &got)
	if n := len(got.GetRequests()); n != 2 || got.GetRequests()[1].GetCredential() != "cred-two" {
		t.Errorf("batch request = %v, want the two credentials in order", &got)
	}
	if strings.Contains(res.stdout, "cred-") {
		t.Errorf("stdout prints credentials:\n%s", res.stdout)
	}
	if !strings.Contains(res.stdout, "expired") {
		t.Errorf("stdout lacks the verdict:\n%s", res.stdout)
	}
}

func TestKeys_FormatJSON(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	key := testIssuedKey()
	key.Metadata = mustStruct(t, map[string]any{"team": "payments"})
	f.answer(t, "GET", pathIssued+"/"+testKeyID, http.StatusOK, key)
	f.answer(t, "POST", pathIssued, http.StatusCreated, &pb.IssueApiKeyResponse{IssuedApiKey: key, Secret: testSecret})

	t.Run("get", func(t *testing.T) {
		res := f.runKeys(t, "get", testKeyID, "--format", "json")
		if res.err != nil {
			t.Fatalf("get: %v", res.err)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, res.stdout)
		}
		if raw["key_id"] != testKeyID || raw["status"] != "KEY_STATUS_ACTIVE" {
			t.Errorf("JSON = %v, want proto names and enum names", raw)
		}
		var got pb.IssuedApiKey
		mustDecode(t, []byte(res.stdout), &got)
		if diff := cmp.Diff(key, &got, protocmp.Transform()); diff != "" {
			t.Errorf("JSON output (-want +got):\n%s", diff)
		}
	})
	t.Run("issue keeps stdout parseable", func(t *testing.T) {
		res := f.runKeys(t, "issue", "ci", "--actor", "alice", "--format", "json")
		if res.err != nil {
			t.Fatalf("issue: %v", res.err)
		}
		var got pb.IssueApiKeyResponse
		mustDecode(t, []byte(res.stdout), &got)
		if got.GetSecret() != testSecret {
			t.Errorf("secret = %q, want %q", got.GetSecret(), testSecret)
		}
		if !strings.Contains(res.stderr, secretWarning) {
			t.Errorf("stderr lacks the warning: %q", res.stderr)
		}
	})
}

func TestKeys_Rotate(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	newKey, oldKey := testIssuedKey(), testIssuedKey()
	newKey.KeyId = "0f8fad5b-d9cb-469f-a165-70867728950e"
	oldKey.Status = pb.KeyStatus_KEY_STATUS_REVOKED
	path := pathIssued + "/" + testKeyID + ":rotate"
	f.answer(t, "POST", path, http.StatusCreated, &pb.RotateIssuedApiKeyResponse{IssuedApiKey: newKey, Secret: testSecret, OldIssuedApiKey: oldKey})

	res := f.runKeys(t, "rotate", testKeyID, "--grace-period", "1h", "--scopes", "read")
	if res.err != nil {
		t.Fatalf("rotate: %v", res.err)
	}
	req := f.only(t)
	if req.Path != path {
		t.Errorf("path = %s, want %s", req.Path, path)
	}
	var got pb.AdminRotateIssuedApiKeyRequest
	mustDecode(t, req.Body, &got)
	// Absent fields are inherited: name must not be sent when not given.
	want := &pb.AdminRotateIssuedApiKeyRequest{Scopes: []string{"read"}, GracePeriod: "1h"}
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("rotate body (-want +got):\n%s", diff)
	}
	for _, s := range []string{newKey.KeyId, "revoked", testSecret, secretWarning} {
		if !strings.Contains(res.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
		}
	}
}

func TestKeys_RevokeAndDelete(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.answer(t, "POST", pathImported+"/"+testImported+":revoke", http.StatusNoContent, nil)
	f.answer(t, "DELETE", pathImported+"/"+testImported, http.StatusNoContent, nil)

	res := f.runKeys(t, "revoke", testImported, "--imported", "--reason", "privilege_withdrawn", "--description", "left the team")
	if res.err != nil {
		t.Fatalf("revoke: %v", res.err)
	}
	var got pb.AdminRevokeImportedApiKeyRequest
	mustDecode(t, f.only(t).Body, &got)
	want := &pb.AdminRevokeImportedApiKeyRequest{Reason: pb.RevocationReason_REVOCATION_REASON_PRIVILEGE_WITHDRAWN, Description: "left the team"}
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("revoke body (-want +got):\n%s", diff)
	}

	res = f.runKeys(t, "delete", testImported, "--format", "json")
	if res.err != nil {
		t.Fatalf("delete: %v", res.err)
	}
	if strings.TrimSpace(res.stdout) != "{}" {
		t.Errorf("delete --format json = %q, want {}", res.stdout)
	}
	if reqs := f.requests(); reqs[len(reqs)-1].Method != "DELETE" {
		t.Errorf("last request = %s, want DELETE", reqs[len(reqs)-1].Method)
	}
}

func TestKeys_SelfRevokeSendsNoAdminToken(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.answer(t, "POST", pathSelfRevoke, http.StatusOK, `{}`)

	res := f.runKeys(t, "self-revoke", testSecret, "--reason", "key_compromise")
	if res.err != nil {
		t.Fatalf("self-revoke: %v", res.err)
	}
	req := f.only(t)
	if req.Auth != "" {
		t.Errorf("Authorization = %q, want none on the public endpoint", req.Auth)
	}
	var got pb.SelfRevokeApiKeyRequest
	mustDecode(t, req.Body, &got)
	want := &pb.SelfRevokeApiKeyRequest{Credential: testSecret, Reason: pb.RevocationReason_REVOCATION_REASON_KEY_COMPROMISE}
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("self-revoke body (-want +got):\n%s", diff)
	}
	if strings.Contains(res.stdout, testSecret) {
		t.Error("the credential was printed")
	}
}

func TestKeys_BatchImport(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.answer(t, "POST", pathBatchImport, http.StatusOK, &pb.BatchCreateImportedApiKeysResponse{
		Results: []*pb.BatchCreateImportedApiKeysResult{
			{Index: 0, ImportedApiKey: &pb.ImportedApiKey{KeyId: testImported, Name: "one", ActorId: "alice"}},
			{Index: 1, ErrorCode: pb.BatchCreateImportedApiKeysErrorCode_BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS, ErrorMessage: "duplicate of item 0"},
		},
		SuccessCount: 1, FailureCount: 1,
	})
	file := filepath.Join(t.TempDir(), "keys.json")
	content := `[{"raw_key":"sk_live_one","name":"one","actor_id":"alice"},{"raw_key":"sk_live_one","name":"two","actor_id":"bob","scopes":["read"]}]`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	res := f.runKeys(t, "batch-import", "--file", file)
	if !errors.Is(res.err, errNotImported) {
		t.Fatalf("batch-import error = %v, want errNotImported", res.err)
	}
	var got pb.BatchCreateImportedApiKeysRequest
	mustDecode(t, f.only(t).Body, &got)
	want := &pb.BatchCreateImportedApiKeysRequest{Requests: []*pb.ImportApiKeyRequest{
		{RawKey: "sk_live_one", Name: "one", ActorId: "alice"},
		{RawKey: "sk_live_one", Name: "two", ActorId: "bob", Scopes: []string{"read"}},
	}}
	if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
		t.Errorf("batch body (-want +got):\n%s", diff)
	}
	for _, s := range []string{testImported, "already_exists: duplicate of item 0", "bob", "1 imported, 1 failed"} {
		if !strings.Contains(res.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "sk_live_one") {
		t.Error("a raw key was printed")
	}

	t.Run("rejects bad files without quoting raw keys", func(t *testing.T) {
		for name, content := range map[string]string{
			"empty":          `[]`,
			"numeric key":    `[{"raw_key": 123456789, "name": "x", "actor_id": "a"}]`,
			"unknown field":  `[{"raw_key": "sk", "nme": "x"}]`,
			"not json":       `raw keys, one per line`,
			"too many items": "[" + strings.Repeat(`{"raw_key":"k"},`, maxBatchImport) + `{"raw_key":"k"}]`,
		} {
			path := filepath.Join(t.TempDir(), "bad.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			before := len(f.requests())
			res := f.runKeys(t, "batch-import", "--file", path)
			if res.err == nil {
				t.Errorf("%s: no error", name)
				continue
			}
			if strings.Contains(res.err.Error(), "123456789") {
				t.Errorf("%s: error %q quotes the raw key", name, res.err)
			}
			if len(f.requests()) != before {
				t.Errorf("%s: a request was sent", name)
			}
		}
	})
}

func TestKeys_EndpointFlagOverridesEnv(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.answer(t, "GET", pathIssued+"/"+testKeyID, http.StatusOK, testIssuedKey())
	var stdout, stderr bytes.Buffer
	environ := []string{envEndpoint + "=http://127.0.0.1:1"}
	err := run(t.Context(), []string{"keys", "-e", f.srv.URL + "/", "--token", "flag-token", "get", testKeyID}, environ, &stdout, &stderr)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got := f.only(t).Auth; got != "Bearer flag-token" {
		t.Errorf("Authorization = %q, want the --token value", got)
	}
}

func TestKeys_NoRedirects(t *testing.T) {
	t.Parallel()
	target := newFakeAPI(t)
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL+pathVerify, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)

	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"keys", "-e", redirect.URL, "verify", testSecret}, nil, &stdout, &stderr)
	if err == nil {
		t.Fatal("verify through a redirect: no error")
	}
	if n := len(target.requests()); n != 0 {
		t.Errorf("the redirect was followed: target got %d requests", n)
	}
}

func TestCredentialArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  []string
	}{
		{"arguments", []string{"a", "b"}, "", []string{"a", "b"}},
		{"stdin, one per line", []string{"-"}, "one\n\n  two  \r\n", []string{"one", "two"}},
		{"mixed", []string{"a", "-"}, "b\n", []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := credentialArgs(tc.args, strings.NewReader(tc.stdin))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("credentials (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := credentialArgs([]string{""}, strings.NewReader("")); err == nil {
		t.Error("an empty credential was accepted")
	}
	if _, err := credentialArgs([]string{"-"}, strings.NewReader(strings.Repeat("x", maxCredentialBytes+10))); err == nil {
		t.Error("an oversized credential line was accepted")
	}
}
