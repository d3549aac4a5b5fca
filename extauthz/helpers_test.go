package extauthz_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// fakeAuthorizer answers from a map of credential to verdict, ErrNotFound
// (a miss) for anything else, and counts its calls.
type fakeAuthorizer struct {
	verdicts map[string]extauthz.Verdict
	calls    atomic.Int64

	mu   sync.Mutex
	last credential.Presented
}

func (f *fakeAuthorizer) Authorize(_ context.Context, p credential.Presented) extauthz.Verdict {
	f.calls.Add(1)
	f.mu.Lock()
	f.last = p
	f.mu.Unlock()
	if v, ok := f.verdicts[p.Credential]; ok {
		return v
	}
	return extauthz.Verdict{Err: credential.ErrNotFound, Cache: extauthz.CacheMiss}
}

func (f *fakeAuthorizer) lastPresented() credential.Presented {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// secretError is an internal failure whose text must never reach a client.
var secretError = errors.New("dial tcp 10.1.2.3:5432: password=hunter2 rejected")

// goodResult is the result of the credential "good".
var goodResult = credential.Result{
	Type:     credential.TypeIssued,
	Tenant:   credential.DefaultTenant,
	KeyID:    "0190f1c2-7b1e-7000-8000-000000000001",
	ActorID:  "user-42",
	Scopes:   []string{"read", "write"},
	Metadata: json.RawMessage(`{"plan":"pro","seats":5,"beta":true,"nested":{"x":1},"evil":"a\nb"}`),
	Status:   credential.StateActive,
}

func newFake() *fakeAuthorizer {
	return &fakeAuthorizer{verdicts: map[string]extauthz.Verdict{
		"good":    {Result: goodResult, Cache: extauthz.CacheHit},
		"expired": {Result: credential.Result{KeyID: "k-expired", Status: credential.StateExpired}, Err: credential.ErrExpired, Cache: extauthz.CacheMiss},
		"revoked": {Err: credential.ErrRevoked, Cache: extauthz.CacheHit},
		"elsewhere": {Err: &credential.Error{Kind: credential.ErrForbidden, Reason: "IP_NOT_ALLOWED",
			Message: "The client address is not allowed."}, Cache: extauthz.CacheHit},
		"limited": {Err: &credential.Error{Kind: credential.ErrRateLimited, RetryAfter: 1500 * time.Millisecond}, Cache: extauthz.CacheHit},
		"down":    {Err: credential.ErrUnavailable},
		"slow":    {Err: credential.ErrDeadlineExceeded},
		"broken":  {Err: secretError},
		"stale":   {Result: goodResult, Cache: extauthz.CacheStale},
		"bad-arg": {Err: credential.Invalid("tenant is not a UUID")},
	}}
}

func mustServer(t testing.TB, a extauthz.Authorizer, o extauthz.Options) *extauthz.Server {
	t.Helper()
	s, err := extauthz.New(a, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// newTestGRPC serves s on a real socket and returns a client of it.
func newTestGRPC(t *testing.T, s *extauthz.Server) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// newTestHTTP serves s's HTTP handler on a real socket.
func newTestHTTP(t *testing.T, s *extauthz.Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(s.HTTPHandler())
	t.Cleanup(srv.Close)
	return srv
}

// checkRequest builds a CheckRequest with merged headers and context
// extensions.
func checkRequest(headers, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method:  "GET",
			Host:    "api.example.com",
			Path:    "/v1/things?x=1",
			Headers: headers,
		}},
		ContextExtensions: ext,
	}}
}

// rawCheckRequest builds a CheckRequest with header_map entries (Envoy's
// encode_raw_headers).
func rawCheckRequest(kv ...string) *authv3.CheckRequest {
	r := checkRequest(nil, nil)
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	r.Attributes.Request.Http.HeaderMap = hm
	return r
}

// outcome is what a CheckResponse tells the proxy, flattened for tests.
type outcome struct {
	GRPCCode  int32
	Status    int
	Headers   map[string]string
	Body      string
	Removed   []string
	ErrorJSON denyJSON
}

type denyJSON struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
}

func flatten(t *testing.T, resp *authv3.CheckResponse) outcome {
	t.Helper()
	o := outcome{GRPCCode: resp.GetStatus().GetCode(), Headers: map[string]string{}}
	switch {
	case resp.GetOkResponse() != nil:
		o.Status = http.StatusOK
		for _, h := range resp.GetOkResponse().GetHeaders() {
			o.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
			}
		}
		o.Removed = resp.GetOkResponse().GetHeadersToRemove()
	case resp.GetDeniedResponse() != nil:
		d := resp.GetDeniedResponse()
		o.Status = int(d.GetStatus().GetCode())
		for _, h := range d.GetHeaders() {
			o.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		o.Body = d.GetBody()
		if err := json.Unmarshal([]byte(o.Body), &o.ErrorJSON); err != nil {
			t.Errorf("deny body %q: %v", o.Body, err)
		}
	default:
		t.Fatalf("response without http_response: %v", resp)
	}
	return o
}
