package extauthz_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

const (
	challengeMissing = `Bearer realm="talos"`
	challengeInvalid = `Bearer realm="talos", error="invalid_token"`
)

func TestServer_Check(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		headers   map[string]string
		ext       map[string]string
		status    int
		code      codes.Code
		reason    string
		challenge string
		retry     string
		calls     int64
	}{
		{name: "no credential", headers: map[string]string{"accept": "*/*"},
			status: 401, code: codes.Unauthenticated, reason: "CREDENTIAL_MISSING", challenge: challengeMissing},
		{name: "bearer", headers: map[string]string{"authorization": "Bearer good"}, status: 200, calls: 1},
		{name: "bearer scheme in any case and several spaces", headers: map[string]string{"authorization": "bEaReR   good"}, status: 200, calls: 1},
		{name: "x-api-key", headers: map[string]string{"x-api-key": "good"}, status: 200, calls: 1},
		{name: "other scheme falls through to x-api-key", headers: map[string]string{"authorization": "Basic dXNlcjpwdw==", "x-api-key": "good"}, status: 200, calls: 1},
		{name: "other scheme only is no credential", headers: map[string]string{"authorization": "Basic dXNlcjpwdw=="},
			status: 401, code: codes.Unauthenticated, reason: "CREDENTIAL_MISSING", challenge: challengeMissing},
		{name: "bearer without token is no credential", headers: map[string]string{"authorization": "Bearer "},
			status: 401, code: codes.Unauthenticated, reason: "CREDENTIAL_MISSING", challenge: challengeMissing},
		// A check that used one would let the other reach the upstream unverified.
		{name: "two credential headers with different values", headers: map[string]string{"authorization": "Bearer good", "x-api-key": "revoked"},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "two credential headers with the same value", headers: map[string]string{"authorization": "Bearer good", "x-api-key": "good"}, status: 200, calls: 1},
		{name: "identical merged repeats", headers: map[string]string{"authorization": "Bearer good, Bearer good"}, status: 200, calls: 1},
		{name: "different merged values", headers: map[string]string{"authorization": "Bearer good,Bearer revoked"},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "different x-api-key values", headers: map[string]string{"x-api-key": "good, good2"},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "space inside the credential", headers: map[string]string{"authorization": "Bearer go od"},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "control byte", headers: map[string]string{"x-api-key": "go\x01od"},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "non-ASCII", headers: map[string]string{"x-api-key": "göod"},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "longest credential is asked", headers: map[string]string{"x-api-key": strings.Repeat("a", credential.MaxCredentialBytes)},
			status: 401, code: codes.Unauthenticated, reason: "NOT_FOUND", challenge: challengeInvalid, calls: 1},
		{name: "one byte too long", headers: map[string]string{"x-api-key": strings.Repeat("a", credential.MaxCredentialBytes+1)},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "64 KB header", headers: map[string]string{"authorization": "Bearer " + strings.Repeat("x", 64<<10)},
			status: 401, code: codes.Unauthenticated, reason: "INVALID_API_KEY_FORMAT", challenge: challengeInvalid},
		{name: "64 KB of another scheme", headers: map[string]string{"authorization": "Basic " + strings.Repeat("x", 64<<10)},
			status: 401, code: codes.Unauthenticated, reason: "CREDENTIAL_MISSING", challenge: challengeMissing},
		{name: "unknown", headers: map[string]string{"x-api-key": "nope"},
			status: 401, code: codes.Unauthenticated, reason: "NOT_FOUND", challenge: challengeInvalid, calls: 1},
		{name: "expired", headers: map[string]string{"x-api-key": "expired"},
			status: 401, code: codes.Unauthenticated, reason: "API_KEY_EXPIRED", challenge: challengeInvalid, calls: 1},
		{name: "revoked", headers: map[string]string{"x-api-key": "revoked"},
			status: 401, code: codes.Unauthenticated, reason: "API_KEY_REVOKED", challenge: challengeInvalid, calls: 1},
		{name: "client IP not allowed", headers: map[string]string{"x-api-key": "elsewhere"},
			status: 403, code: codes.PermissionDenied, reason: "IP_NOT_ALLOWED", calls: 1},
		{name: "rate limited", headers: map[string]string{"x-api-key": "limited"},
			status: 429, code: codes.ResourceExhausted, reason: "TOO_MANY_REQUESTS", retry: "2", calls: 1},
		{name: "upstream down", headers: map[string]string{"x-api-key": "down"},
			status: 503, code: codes.Unavailable, reason: "SERVICE_UNAVAILABLE", calls: 1},
		{name: "upstream timeout", headers: map[string]string{"x-api-key": "slow"},
			status: 503, code: codes.Unavailable, reason: "SERVICE_UNAVAILABLE", calls: 1},
		{name: "unknown error", headers: map[string]string{"x-api-key": "broken"},
			status: 503, code: codes.Unavailable, reason: "SERVICE_UNAVAILABLE", calls: 1},
		{name: "invalid argument", headers: map[string]string{"x-api-key": "bad-arg"},
			status: 400, code: codes.InvalidArgument, reason: "BAD_REQUEST", calls: 1},
		{name: "scopes held", headers: map[string]string{"x-api-key": "good"}, ext: map[string]string{"talos.scopes": "read, write"},
			status: 200, calls: 1},
		{name: "scope missing", headers: map[string]string{"x-api-key": "good"}, ext: map[string]string{"talos.scopes": "read,admin"},
			status: 403, code: codes.PermissionDenied, reason: "INSUFFICIENT_SCOPE",
			challenge: `Bearer realm="talos", error="insufficient_scope", scope="read admin"`, calls: 1},
		{name: "odd scope cannot break the challenge", headers: map[string]string{"x-api-key": "good"}, ext: map[string]string{"talos.scopes": `a"\b`},
			status: 403, code: codes.PermissionDenied, reason: "INSUFFICIENT_SCOPE",
			challenge: `Bearer realm="talos", error="insufficient_scope", scope="ab"`, calls: 1},
		{name: "scope missing is not asked without credential", ext: map[string]string{"talos.scopes": "admin"},
			status: 401, code: codes.Unauthenticated, reason: "CREDENTIAL_MISSING", challenge: challengeMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake()
			client := newTestGRPC(t, mustServer(t, fake, extauthz.Options{}))
			resp, err := client.Check(t.Context(), checkRequest(tt.headers, tt.ext))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			got := flatten(t, resp)
			if got.Status != tt.status {
				t.Errorf("status = %d, want %d (body %s)", got.Status, tt.status, got.Body)
			}
			if n := fake.calls.Load(); n != tt.calls {
				t.Errorf("Authorizer calls = %d, want %d", n, tt.calls)
			}
			if tt.status == http.StatusOK {
				if got.GRPCCode != int32(codes.OK) {
					t.Errorf("grpc code = %d, want OK", got.GRPCCode)
				}
				return
			}
			if codes.Code(got.GRPCCode) != tt.code {
				t.Errorf("grpc code = %v, want %v", codes.Code(got.GRPCCode), tt.code)
			}
			e := got.ErrorJSON.Error
			if e.Code != tt.status || e.Reason != tt.reason || e.Status != wantStatusName(tt.code) || e.Message == "" {
				t.Errorf("body = %s, want code %d, status %s, reason %s and a message", got.Body, tt.status, wantStatusName(tt.code), tt.reason)
			}
			want := map[string]string{"content-type": "application/json"}
			if tt.challenge != "" {
				want["www-authenticate"] = tt.challenge
			}
			if tt.retry != "" {
				want["retry-after"] = tt.retry
			}
			if diff := cmp.Diff(want, got.Headers); diff != "" {
				t.Errorf("deny headers (-want +got):\n%s", diff)
			}
			if strings.Contains(got.Body, "hunter2") || strings.Contains(got.Body, "10.1.2.3") {
				t.Errorf("deny body leaks the cause: %s", got.Body)
			}
		})
	}
}

func wantStatusName(c codes.Code) string {
	return map[codes.Code]string{
		codes.Unauthenticated: "UNAUTHENTICATED", codes.PermissionDenied: "PERMISSION_DENIED",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.Unavailable: "UNAVAILABLE",
		codes.InvalidArgument: "INVALID_ARGUMENT",
	}[c]
}

func TestServer_Check_allow(t *testing.T) {
	t.Parallel()
	fake := newFake()
	s := mustServer(t, fake, extauthz.Options{RemoveCredential: true, MetadataHeaders: []string{"plan", "seats", "beta", "nested", "evil", "absent"}})
	client := newTestGRPC(t, s)
	resp, err := client.Check(t.Context(), checkRequest(map[string]string{
		"authorization":     "Bearer good",
		"x-talos-key-id":    "forged", // overwritten
		"x-talos-scopes":    "admin",  // overwritten
		"x-talos-meta-evil": "forged", // not set by us: removed
		"x-talos-whatever":  "x",      // removed
		"x-request-id":      "abc",    // untouched
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &authv3.CheckResponse{
		Status: statusOK(),
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				overwrite("x-talos-key-id", string(goodResult.KeyID)),
				overwrite("x-talos-actor-id", "user-42"),
				overwrite("x-talos-scopes", "read write"),
				overwrite("x-talos-tenant", string(credential.DefaultTenant)),
				overwrite("x-talos-credential-type", "issued"),
				overwrite("x-talos-meta-plan", "pro"),
				overwrite("x-talos-meta-seats", "5"),
				overwrite("x-talos-meta-beta", "true"),
			},
			HeadersToRemove: []string{"authorization", "x-api-key", "x-talos-meta-evil", "x-talos-whatever"},
		}},
		DynamicMetadata: mustStruct(t, map[string]any{
			"key_id":          string(goodResult.KeyID),
			"actor_id":        "user-42",
			"tenant":          string(credential.DefaultTenant),
			"credential_type": "issued",
			"scopes":          []any{"read", "write"},
		}),
	}
	if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
}

func TestServer_Check_antiSpoofing(t *testing.T) {
	t.Parallel()
	minimal := &fakeAuthorizer{verdicts: map[string]extauthz.Verdict{
		// No actor and no scopes: their headers are not set, so forged ones go.
		"min": {Result: credential.Result{KeyID: "k1", Type: credential.TypeImported}},
	}}
	tests := []struct {
		name   string
		opts   extauthz.Options
		req    *authv3.CheckRequest
		remove []string
	}{
		{"nothing to remove", extauthz.Options{}, checkRequest(map[string]string{"x-api-key": "min"}, nil), nil},
		{"credential only", extauthz.Options{RemoveCredential: true}, checkRequest(map[string]string{"x-api-key": "min"}, nil), []string{"authorization", "x-api-key"}},
		// Every credential header goes, whatever it carried: here another
		// scheme, which was never verified.
		{"every credential header", extauthz.Options{RemoveCredential: true},
			checkRequest(map[string]string{"authorization": "Basic dXNlcjpwdw==", "x-api-key": "min"}, nil), []string{"authorization", "x-api-key"}},
		{"custom credential headers", extauthz.Options{RemoveCredential: true, CredentialHeaders: []string{"x-key", "x-api-key", "authorization"}},
			checkRequest(map[string]string{"x-api-key": "min"}, nil), []string{"authorization", "x-api-key", "x-key"}},
		{"forged unset headers", extauthz.Options{},
			checkRequest(map[string]string{"x-api-key": "min", "x-talos-actor-id": "root", "x-talos-scopes": "admin", "x-talos-key-id": "k9"}, nil),
			[]string{"x-talos-actor-id", "x-talos-scopes"}},
		{"raw headers in any case, repeated", extauthz.Options{RemoveCredential: true},
			rawCheckRequest("x-api-key", "min", "X-Talos-Scopes", "admin", "x-talos-scopes", "more"),
			[]string{"authorization", "x-api-key", "x-talos-scopes"}},
		{"custom prefix", extauthz.Options{HeaderPrefix: "x-auth-"},
			checkRequest(map[string]string{"x-api-key": "min", "x-auth-scopes": "admin", "x-talos-scopes": "other"}, nil),
			[]string{"x-auth-scopes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := mustServer(t, minimal, tt.opts)
			resp, err := s.Check(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.remove, resp.GetOkResponse().GetHeadersToRemove()); diff != "" {
				t.Errorf("headers_to_remove (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServer_Check_badInput(t *testing.T) {
	t.Parallel()
	hundred := func(same bool) *authv3.CheckRequest {
		var kv []string
		for i := range 100 {
			v := "Bearer good"
			if !same {
				v = "Bearer good" + strings.Repeat("x", i)
			}
			kv = append(kv, "authorization", v)
		}
		return rawCheckRequest(kv...)
	}
	tests := []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		reason string
		calls  int64
	}{
		{"empty request", &authv3.CheckRequest{}, 401, "CREDENTIAL_MISSING", 0},
		{"empty attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}, 401, "CREDENTIAL_MISSING", 0},
		{"empty request attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 401, "CREDENTIAL_MISSING", 0},
		{"empty http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}}, 401, "CREDENTIAL_MISSING", 0},
		{"64 KB values", checkRequest(map[string]string{"x-api-key": strings.Repeat("k", 64<<10), "x-other": strings.Repeat("o", 64<<10)}, nil), 401, "INVALID_API_KEY_FORMAT", 0},
		{"100 different authorization values", hundred(false), 401, "INVALID_API_KEY_FORMAT", 0},
		{"100 identical authorization values", hundred(true), 200, "", 1},
		{"non-UTF-8 raw value", rawCheckRequest("authorization", "Bearer \xff\xfe\x80good"), 401, "INVALID_API_KEY_FORMAT", 0},
		{"nil raw header", func() *authv3.CheckRequest {
			r := rawCheckRequest("x-api-key", "good")
			r.Attributes.Request.Http.HeaderMap.Headers = append([]*corev3.HeaderValue{nil}, r.Attributes.Request.Http.HeaderMap.Headers...)
			return r
		}(), 200, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake()
			client := newTestGRPC(t, mustServer(t, fake, extauthz.Options{}))
			resp, err := client.Check(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			got := flatten(t, resp)
			if got.Status != tt.status || got.ErrorJSON.Error.Reason != tt.reason {
				t.Errorf("got %d %q, want %d %q", got.Status, got.ErrorJSON.Error.Reason, tt.status, tt.reason)
			}
			if n := fake.calls.Load(); n != tt.calls {
				t.Errorf("Authorizer calls = %d, want %d", n, tt.calls)
			}
		})
	}

	// Invalid UTF-8 cannot cross the wire in a proto string; an in-process
	// caller can still hand it over.
	t.Run("non-UTF-8 merged value in process", func(t *testing.T) {
		t.Parallel()
		fake := newFake()
		s := mustServer(t, fake, extauthz.Options{})
		resp, err := s.Check(t.Context(), checkRequest(map[string]string{"x-api-key": "go\xffod"}, map[string]string{"talos.tenant": "\xff"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := flatten(t, resp); got.Status != 401 || got.ErrorJSON.Error.Reason != "INVALID_API_KEY_FORMAT" {
			t.Errorf("got %d %s", got.Status, got.Body)
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Errorf("response does not marshal: %v", err)
		}
		if n := fake.calls.Load(); n != 0 {
			t.Errorf("Authorizer calls = %d, want 0", n)
		}
	})
	t.Run("nil request in process", func(t *testing.T) {
		t.Parallel()
		resp, err := mustServer(t, newFake(), extauthz.Options{}).Check(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := flatten(t, resp); got.Status != 401 {
			t.Errorf("status = %d, want 401", got.Status)
		}
	})
}

func TestServer_Check_unavailableAsError(t *testing.T) {
	t.Parallel()
	for _, cred := range []string{"down", "slow", "broken"} {
		t.Run(cred, func(t *testing.T) {
			t.Parallel()
			s := mustServer(t, newFake(), extauthz.Options{UnavailableAsError: true})
			client := newTestGRPC(t, s)
			_, err := client.Check(t.Context(), checkRequest(map[string]string{"x-api-key": cred}, nil))
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v, want code Unavailable", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the cause: %v", err)
			}
			// Verdicts are still answered as denies.
			resp, err := client.Check(t.Context(), checkRequest(map[string]string{"x-api-key": "revoked"}, nil))
			if err != nil || flatten(t, resp).Status != 401 {
				t.Errorf("revoked: %v %v", resp, err)
			}
			// HTTP mode has no failure_mode_allow: it answers 503.
			srv := newTestHTTP(t, s)
			hresp := httpGet(t, srv.URL+"/x", map[string]string{"X-Api-Key": cred})
			if hresp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("HTTP status = %d, want 503", hresp.StatusCode)
			}
		})
	}
}

func TestServer_Check_observe(t *testing.T) {
	t.Parallel()
	type call struct {
		transport string
		status    int
		cache     extauthz.CacheStatus
		reason    string
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	o := extauthz.Options{Observe: func(transport string, v extauthz.Verdict, status int, elapsed time.Duration) {
		if elapsed < 0 {
			t.Errorf("elapsed %v < 0", elapsed)
		}
		reason := ""
		if ce, ok := v.Err.(*credential.Error); ok {
			reason = ce.Reason
		}
		mu.Lock()
		calls = append(calls, call{transport, status, v.Cache, reason})
		mu.Unlock()
	}}
	s := mustServer(t, newFake(), o)
	ctx := t.Context()
	for _, h := range []map[string]string{
		{"x-api-key": "good"}, {}, {"x-api-key": "a,b"}, {"x-api-key": "limited"},
	} {
		if _, err := s.Check(ctx, checkRequest(h, map[string]string{})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Check(ctx, checkRequest(map[string]string{"x-api-key": "good"}, map[string]string{"talos.scopes": "admin"})); err != nil {
		t.Fatal(err)
	}
	want := []call{
		{"grpc", 200, extauthz.CacheHit, ""},
		{"grpc", 401, extauthz.CacheNone, "CREDENTIAL_MISSING"},
		{"grpc", 401, extauthz.CacheNone, "INVALID_API_KEY_FORMAT"},
		{"grpc", 429, extauthz.CacheHit, ""},
		{"grpc", 403, extauthz.CacheHit, "INSUFFICIENT_SCOPE"},
	}
	if diff := cmp.Diff(want, calls, cmp.AllowUnexported(call{})); diff != "" {
		t.Errorf("Observe calls (-want +got):\n%s", diff)
	}
}

func TestServer_Check_customRealmAndTenant(t *testing.T) {
	t.Parallel()
	fake := newFake()
	s := mustServer(t, fake, extauthz.Options{Realm: "api", Tenant: "11111111-1111-1111-1111-111111111111"})
	resp, err := s.Check(t.Context(), checkRequest(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := flatten(t, resp).Headers["www-authenticate"]; got != `Bearer realm="api"` {
		t.Errorf("challenge = %q", got)
	}
	if _, err := s.Check(t.Context(), checkRequest(map[string]string{"x-api-key": "good"}, nil)); err != nil {
		t.Fatal(err)
	}
	if got := fake.lastPresented().Tenant; got != "11111111-1111-1111-1111-111111111111" {
		t.Errorf("tenant = %q", got)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a    extauthz.Authorizer
		o    extauthz.Options
		ok   bool
	}{
		{"defaults", newFake(), extauthz.Options{}, true},
		{"custom", newFake(), extauthz.Options{CredentialHeaders: []string{"x-key"}, ClientIPHeaders: []string{"x-forwarded-for", "x-real-ip"},
			HeaderPrefix: "x-auth-", MetadataHeaders: []string{"Plan"}, Realm: "my api"}, true},
		{"nil authorizer", nil, extauthz.Options{}, false},
		{"upper-case credential header", newFake(), extauthz.Options{CredentialHeaders: []string{"Authorization"}}, false},
		{"empty credential header", newFake(), extauthz.Options{CredentialHeaders: []string{""}}, false},
		{"pseudo header", newFake(), extauthz.Options{CredentialHeaders: []string{":authority"}}, false},
		{"duplicate credential header", newFake(), extauthz.Options{CredentialHeaders: []string{"x-api-key", "x-api-key"}}, false},
		{"credential header under the prefix", newFake(), extauthz.Options{CredentialHeaders: []string{"x-talos-key"}}, false},
		{"upper-case client IP header", newFake(), extauthz.Options{ClientIPHeaders: []string{"X-Forwarded-For"}}, false},
		{"prefix with a space", newFake(), extauthz.Options{HeaderPrefix: "x talos-"}, false},
		{"upper-case prefix", newFake(), extauthz.Options{HeaderPrefix: "X-Talos-"}, false},
		{"metadata field with a space", newFake(), extauthz.Options{MetadataHeaders: []string{"a b"}}, false},
		{"metadata fields colliding", newFake(), extauthz.Options{MetadataHeaders: []string{"plan", "Plan"}}, false},
		{"realm with a quote", newFake(), extauthz.Options{Realm: `a"b`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := extauthz.New(tt.a, tt.o)
			if (err == nil) != tt.ok {
				t.Fatalf("New() error = %v, want ok %v", err, tt.ok)
			}
			if tt.ok && s == nil {
				t.Fatal("New() = nil without an error")
			}
		})
	}
	t.Run("copies slices", func(t *testing.T) {
		t.Parallel()
		headers := []string{"x-key"}
		s := mustServer(t, newFake(), extauthz.Options{CredentialHeaders: headers})
		headers[0] = "x-other"
		resp, err := s.Check(t.Context(), checkRequest(map[string]string{"x-key": "good"}, nil))
		if err != nil || resp.GetOkResponse() == nil {
			t.Errorf("Check after the caller changed its slice: %v %v", resp, err)
		}
	})
}

func statusOK() *rpcstatus.Status { return &rpcstatus.Status{Code: int32(codes.OK)} }

func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServer_Check_concurrent shares one Server, and so its prebuilt
// responses, between concurrent checks over the wire (run with -race).
func TestServer_Check_concurrent(t *testing.T) {
	t.Parallel()
	fake := newFake()
	client := newTestGRPC(t, mustServer(t, fake, extauthz.Options{RemoveCredential: true}))
	creds := []string{"", "good", "revoked", "down", "a,b", "limited"}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(creds))
	for i := range 8 * len(creds) {
		wg.Go(func() {
			h := map[string]string{}
			if c := creds[i%len(creds)]; c != "" {
				h["x-api-key"] = c
			}
			if _, err := client.Check(t.Context(), checkRequest(h, nil)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
