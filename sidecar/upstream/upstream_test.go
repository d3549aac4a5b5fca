package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/token"
	"github.com/talos-project/talos/sidecar/upstream"
)

const tenant credential.Tenant = "3f4c9a52-6d0e-4a8e-9f5b-1c2d3e4f5a6b"

var resultOpts = cmp.Options{
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func keyResult() credential.Result {
	return credential.Result{
		Type:       credential.TypeIssued,
		Tenant:     tenant,
		KeyID:      "0b7e1c7a-3f0e-4d4a-9d43-2f1c2b3a4d5e",
		ActorID:    "user-42",
		Scopes:     []string{"keys:read", "reports:write"},
		Metadata:   json.RawMessage(`{"plan":"pro","n":1}`),
		Status:     credential.StateActive,
		Visibility: credential.VisibilitySecret,
		ExpireTime: time.Date(2031, 5, 6, 7, 8, 9, 123_000_000, time.UTC),
		RatePolicy: &credential.RatePolicy{Quota: 100, Window: time.Minute, Unit: "requests"},
		AllowedCIDRs: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.0.2.7/32"),
			netip.MustParsePrefix("2001:db8::/32"),
		},
	}
}

// verdictCases are the outcomes a control plane can answer, as the domain
// values it encodes with apiconv.SidecarResponse.
func verdictCases() map[string]struct {
	res credential.Result
	err error
} {
	revoked := keyResult()
	revoked.Status = credential.StateRevoked
	expired := keyResult()
	expired.Status = credential.StateExpired
	expired.ExpireTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	jwt := keyResult()
	jwt.Type = credential.TypeJWT
	jwt.Audiences = []string{"https://a.example", "https://b.example"}
	jwt.Issuer = "https://talos.example"
	jwt.Visibility = credential.VisibilityPublic
	mac := keyResult()
	mac.Type = credential.TypeMacaroon
	mac.Conditions = map[string]string{"method": "GET", "path": "/reports"}
	mac.RatePolicy = nil
	mac.Metadata = nil
	mac.ExpireTime = time.Time{}
	mac.AllowedCIDRs = nil

	return map[string]struct {
		res credential.Result
		err error
	}{
		"valid key":   {keyResult(), nil},
		"valid jwt":   {jwt, nil},
		"valid mac":   {mac, nil},
		"malformed":   {credential.Result{}, credential.Errorf(credential.ErrMalformed, "INVALID_API_KEY_FORMAT", "The credential is malformed.")},
		"not found":   {credential.Result{}, credential.Errorf(credential.ErrNotFound, "API_KEY_NOT_FOUND", "The API key was not found.")},
		"expired":     {expired, credential.Errorf(credential.ErrExpired, "API_KEY_EXPIRED", "The API key has expired.")},
		"revoked":     {revoked, credential.Errorf(credential.ErrRevoked, "API_KEY_REVOKED", "The API key has been revoked.")},
		"forbidden":   {keyResult(), credential.Errorf(credential.ErrForbidden, "IP_NOT_ALLOWED", "The client address is not allowed.")},
		"rate limit":  {keyResult(), credential.Errorf(credential.ErrRateLimited, "TOO_MANY_REQUESTS", "Slow down.")},
		"bad token":   {credential.Result{Type: credential.TypeJWT}, credential.Errorf(credential.ErrUnauthenticated, "SIGNATURE_INVALID", "The token signature is invalid.")},
		"bare denial": {credential.Result{}, credential.ErrNotFound},
	}
}

// checkVerdict compares a decoded verdict with the one encoded.
func checkVerdict(t *testing.T, gotRes credential.Result, gotErr error, wantRes credential.Result, wantErr error) {
	t.Helper()
	if diff := cmp.Diff(wantRes, gotRes, resultOpts); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if wantErr == nil {
		if gotErr != nil {
			t.Errorf("err = %v, want nil", gotErr)
		}
		return
	}
	kind := credential.KindOf(wantErr)
	if !errors.Is(gotErr, kind) {
		t.Fatalf("err = %v, want %v", gotErr, kind)
	}
	var got *credential.Error
	if !errors.As(gotErr, &got) {
		t.Fatalf("err = %T, want *credential.Error", gotErr)
	}
	var want *credential.Error
	if errors.As(wantErr, &want) && (got.Reason != want.Reason || got.Message != want.Message) {
		t.Errorf("reason, message = %q, %q; want %q, %q", got.Reason, got.Message, want.Reason, want.Message)
	}
}

func TestClient_Verify_Verdicts(t *testing.T) {
	t.Parallel()
	cases := verdictCases()
	var lastReq atomic.Pointer[sidecarpb.VerifyRequest]
	fv := &fakeVerifier{verify: func(_ context.Context, r *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		lastReq.Store(r)
		c, ok := cases[strings.TrimPrefix(r.GetCredential(), credPrefix)]
		if !ok {
			return nil, status.Error(codes.Internal, "unknown test case")
		}
		return apiconv.SidecarResponse(c.res, c.err), nil
	}}
	srv := newTestServer(t, fv, nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{})

	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := credential.Presented{
				Tenant:            tenant,
				Credential:        credPrefix + name,
				ClientIP:          netip.MustParseAddr("203.0.113.9"),
				ExpectedAudiences: []string{"https://a.example"},
			}
			res, err := client.Verify(t.Context(), p)
			checkVerdict(t, res, err, tc.res, tc.err)
			if err != nil && strings.Contains(err.Error(), credPrefix) {
				t.Errorf("the error %q holds the credential", err)
			}
			req := lastReq.Load()
			if req.GetTenant() != string(tenant) || req.GetCredential() != p.Credential ||
				!cmp.Equal(req.GetExpectedAudiences(), p.ExpectedAudiences) {
				t.Errorf("request = %v; want tenant, credential and audiences of %v", req, p)
			}
		})
	}
	if got, want := client.Calls(), uint64(len(cases)); got != want {
		t.Errorf("Calls = %d, want %d: a verdict must not be retried", got, want)
	}
}

func TestClient_Verify_Token(t *testing.T) {
	t.Parallel()
	seen := make(chan []string, 2)
	fv := &fakeVerifier{verify: func(ctx context.Context, _ *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		seen <- md.Get("authorization")
		return apiconv.SidecarResponse(keyResult(), nil), nil
	}}
	srv := newTestServer(t, fv, nil)

	with, _ := newTestClient(t, srv.addr, upstream.Options{Token: "sidecar-token"})
	if _, err := with.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := <-seen; !cmp.Equal(got, []string{"Bearer sidecar-token"}) {
		t.Errorf("authorization = %q, want [Bearer sidecar-token]", got)
	}

	without, _ := newTestClient(t, srv.addr, upstream.Options{})
	if _, err := without.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := <-seen; len(got) != 0 {
		t.Errorf("authorization = %q without a token, want none", got)
	}
}

// unavailableThen answers UNAVAILABLE n times, then a valid verdict.
func unavailableThen(n int64) *fakeVerifier {
	fv := &fakeVerifier{}
	fv.verify = func(context.Context, *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		if fv.calls.Load() <= n {
			return nil, status.Error(codes.Unavailable, "store down")
		}
		return apiconv.SidecarResponse(keyResult(), nil), nil
	}
	return fv
}

func TestClient_Verify_Retry(t *testing.T) {
	t.Parallel()
	p := credential.Presented{Tenant: tenant, Credential: credPrefix + "retry"}
	tests := []struct {
		name        string
		retries     int
		unavailable int64
		wantCalls   uint64
		wantErr     error
	}{
		{"success after two failures", 0, 2, 3, nil}, // default: 2 retries
		{"retries exhausted", 0, 10, 3, credential.ErrUnavailable},
		{"more retries", 4, 4, 5, nil},
		{"retries off", -1, 1, 1, credential.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fv := unavailableThen(tt.unavailable)
			srv := newTestServer(t, fv, nil)
			client, _ := newTestClient(t, srv.addr, upstream.Options{Retries: tt.retries})
			res, err := client.Verify(t.Context(), p)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && res.KeyID != keyResult().KeyID {
				t.Errorf("KeyID = %q after retries, want %q", res.KeyID, keyResult().KeyID)
			}
			if got := client.Calls(); got != tt.wantCalls {
				t.Errorf("Calls = %d, want %d", got, tt.wantCalls)
			}
			if got := uint64(fv.calls.Load()); got != tt.wantCalls {
				t.Errorf("server saw %d calls, want %d", got, tt.wantCalls)
			}
		})
	}
}

// TestClient_Verify_Backoff checks the delays: full jitter over a bound that
// starts at Backoff and doubles up to MaxBackoff.
func TestClient_Verify_Backoff(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, unavailableThen(100), nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{Retries: 8, Backoff: 100 * time.Millisecond})
	var bounds []time.Duration
	upstream.SetJitter(client, func(b time.Duration) time.Duration {
		bounds = append(bounds, b)
		return 0
	})
	if _, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"}); !errors.Is(err, credential.ErrUnavailable) {
		t.Fatalf("Verify = %v, want ErrUnavailable", err)
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second, time.Second, time.Second}
	if !cmp.Equal(bounds, want) {
		t.Errorf("backoff bounds = %v, want %v", bounds, want)
	}
}

// TestClient_Verify_StatusErrors checks that a status is never taken for a
// verdict, and that only UNAVAILABLE is retried.
func TestClient_Verify_StatusErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code      codes.Code
		want      error
		wantCalls uint64
		wantLog   string
	}{
		{codes.InvalidArgument, credential.ErrInvalidArgument, 1, ""},
		{codes.Unauthenticated, credential.ErrUnavailable, 1, "the control plane rejected the sidecar's token"},
		{codes.PermissionDenied, credential.ErrUnavailable, 1, "the control plane rejected the sidecar's token"},
		{codes.NotFound, credential.ErrUnavailable, 1, "control plane call failed"},
		{codes.ResourceExhausted, credential.ErrUnavailable, 1, "control plane call failed"},
		{codes.Internal, credential.ErrUnavailable, 1, "control plane call failed"},
		{codes.Unimplemented, credential.ErrUnimplemented, 1, "control plane call failed"},
		{codes.Unavailable, credential.ErrUnavailable, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			t.Parallel()
			fv := &fakeVerifier{verify: func(context.Context, *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
				return nil, status.Error(tt.code, "server says no")
			}}
			srv := newTestServer(t, fv, nil)
			client, logs := newTestClient(t, srv.addr, upstream.Options{})
			res, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"})
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
			if credential.IsVerdict(err) {
				t.Errorf("Verify = %v, a verdict; a status must never be one", err)
			}
			if res.KeyID != "" {
				t.Errorf("Result = %+v, want empty", res)
			}
			if got := client.Calls(); got != tt.wantCalls {
				t.Errorf("Calls = %d, want %d", got, tt.wantCalls)
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), `"level":"ERROR","msg":"`+tt.wantLog) {
				t.Errorf("logs lack an error %q:\n%s", tt.wantLog, logs)
			}
		})
	}
}

func TestClient_Verify_BadResponse(t *testing.T) {
	t.Parallel()
	fv := &fakeVerifier{verify: func(context.Context, *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		return &sidecarpb.VerifyResponse{Outcome: sidecarpb.Outcome(99), KeyId: "k"}, nil
	}}
	srv := newTestServer(t, fv, nil)
	client, logs := newTestClient(t, srv.addr, upstream.Options{})
	res, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"})
	if !errors.Is(err, credential.ErrUnavailable) || res.KeyID != "" {
		t.Errorf("Verify = %+v, %v; want an empty result and ErrUnavailable", res, err)
	}
	if !strings.Contains(logs.String(), "cannot read") {
		t.Errorf("no log of the unreadable response:\n%s", logs)
	}
}

// blockingVerifier answers only when the call's context ends.
func blockingVerifier() *fakeVerifier {
	return &fakeVerifier{verify: func(ctx context.Context, _ *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
}

func TestClient_Verify_Deadlines(t *testing.T) {
	t.Parallel()
	p := credential.Presented{Credential: credPrefix + "x"}

	t.Run("caller deadline ends the call, without retry", func(t *testing.T) {
		t.Parallel()
		srv := newTestServer(t, blockingVerifier(), nil)
		client, _ := newTestClient(t, srv.addr, upstream.Options{Timeout: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := client.Verify(ctx, p)
		if !errors.Is(err, credential.ErrDeadlineExceeded) {
			t.Errorf("Verify = %v, want ErrDeadlineExceeded", err)
		}
		if got := client.Calls(); got != 1 {
			t.Errorf("Calls = %d, want 1", got)
		}
	})
	t.Run("attempt timeout is retried, then reported", func(t *testing.T) {
		t.Parallel()
		srv := newTestServer(t, blockingVerifier(), nil)
		client, _ := newTestClient(t, srv.addr, upstream.Options{Timeout: 20 * time.Millisecond, Retries: 1})
		_, err := client.Verify(t.Context(), p)
		if !errors.Is(err, credential.ErrDeadlineExceeded) {
			t.Errorf("Verify = %v, want ErrDeadlineExceeded", err)
		}
		if got := client.Calls(); got != 2 {
			t.Errorf("Calls = %d, want 2", got)
		}
	})
	t.Run("no retry that would outlive the caller", func(t *testing.T) {
		t.Parallel()
		srv := newTestServer(t, unavailableThen(100), nil)
		client, _ := newTestClient(t, srv.addr, upstream.Options{})
		upstream.SetJitter(client, func(time.Duration) time.Duration { return time.Hour })
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := client.Verify(ctx, p)
		if !errors.Is(err, credential.ErrUnavailable) || ctx.Err() != nil {
			t.Errorf("Verify = %v (ctx %v), want ErrUnavailable at once", err, ctx.Err())
		}
		if got := client.Calls(); got != 1 {
			t.Errorf("Calls = %d, want 1", got)
		}
	})
	t.Run("cancelled caller", func(t *testing.T) {
		t.Parallel()
		srv := newTestServer(t, blockingVerifier(), nil)
		client, _ := newTestClient(t, srv.addr, upstream.Options{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := client.Verify(ctx, p)
		if !errors.Is(err, credential.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("Verify = %v, want ErrUnavailable wrapping context.Canceled", err)
		}
		if got := client.Calls(); got != 0 {
			t.Errorf("Calls = %d, want 0 for a context cancelled before the call", got)
		}
	})
}

// TestClient_Verify_ServerDown checks that a stopped control plane is
// reported as ErrUnavailable after the retries, long before the caller's
// deadline.
func TestClient_Verify_ServerDown(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, unavailableThen(0), nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{Timeout: 200 * time.Millisecond})
	p := credential.Presented{Credential: credPrefix + "x"}
	if _, err := client.Verify(t.Context(), p); err != nil {
		t.Fatalf("Verify while up: %v", err)
	}
	if !client.Ready() {
		t.Error("Ready = false after a successful call")
	}
	srv.srv.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := client.Verify(ctx, p)
	if !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Verify with the server down = %v, want ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Verify ran into the caller's deadline")
	}
	if got := client.Calls(); got != 4 {
		t.Errorf("Calls = %d, want 1 + 3 attempts", got)
	}
	if client.Ready() {
		t.Error("Ready = true with the server down")
	}
}

func TestClient_Ready(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, unavailableThen(0), nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{})
	// New starts connecting, so a probe turns ready without traffic.
	deadline := time.Now().Add(10 * time.Second)
	for !client.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("Ready still false 10s after New with the server up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if client.Ready() {
		t.Error("Ready = true after Close")
	}
	if _, err := client.Verify(t.Context(), credential.Presented{Credential: credPrefix + "x"}); !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("Verify after Close = %v, want ErrUnavailable", err)
	}
}

func TestNew_Invalid(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]upstream.Options{
		"no address":       {},
		"negative timeout": {Addr: "127.0.0.1:1", Timeout: -time.Second},
		"negative backoff": {Addr: "127.0.0.1:1", Backoff: -time.Second},
	} {
		if _, err := upstream.New(o); !errors.Is(err, credential.ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestClient_BatchVerify(t *testing.T) {
	t.Parallel()
	cases := verdictCases()
	fv := &fakeVerifier{verify: func(_ context.Context, r *sidecarpb.VerifyRequest) (*sidecarpb.VerifyResponse, error) {
		name := strings.TrimPrefix(r.GetCredential(), credPrefix)
		if c, ok := cases[name]; ok {
			return apiconv.SidecarResponse(c.res, c.err), nil
		}
		// Numbered credentials: a valid key whose ID is the number.
		res := keyResult()
		res.KeyID = credential.KeyID(name)
		return apiconv.SidecarResponse(res, nil), nil
	}}
	srv := newTestServer(t, fv, nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{})

	t.Run("verdicts in order", func(t *testing.T) {
		names := []string{"revoked", "valid key", "not found", "valid jwt", "rate limit", "valid key"}
		ps := make([]credential.Presented, len(names))
		for i, n := range names {
			ps[i] = credential.Presented{Tenant: tenant, Credential: credPrefix + n}
		}
		before := client.Calls()
		vs, err := client.BatchVerify(t.Context(), ps)
		if err != nil {
			t.Fatalf("BatchVerify: %v", err)
		}
		if len(vs) != len(names) {
			t.Fatalf("got %d verdicts, want %d", len(vs), len(names))
		}
		for i, n := range names {
			t.Run(n, func(t *testing.T) {
				checkVerdict(t, vs[i].Result, vs[i].Err, cases[n].res, cases[n].err)
			})
		}
		if got := client.Calls() - before; got != 1 {
			t.Errorf("Calls = %d, want 1", got)
		}
	})
	t.Run("large batch is split", func(t *testing.T) {
		const n = 2500
		ps := make([]credential.Presented, n)
		for i := range ps {
			ps[i] = credential.Presented{Tenant: tenant, Credential: fmt.Sprint(credPrefix, i)}
		}
		before := client.Calls()
		vs, err := client.BatchVerify(t.Context(), ps)
		if err != nil {
			t.Fatalf("BatchVerify: %v", err)
		}
		for i, v := range vs {
			if want := credential.KeyID(fmt.Sprint(i)); v.Err != nil || v.Result.KeyID != want {
				t.Fatalf("verdict %d = %q, %v; want %q, nil", i, v.Result.KeyID, v.Err, want)
			}
		}
		if len(vs) != n {
			t.Errorf("got %d verdicts, want %d", len(vs), n)
		}
		if got := client.Calls() - before; got != 3 {
			t.Errorf("Calls = %d, want 3", got)
		}
	})
	t.Run("empty", func(t *testing.T) {
		before := client.Calls()
		vs, err := client.BatchVerify(t.Context(), nil)
		if err != nil || len(vs) != 0 {
			t.Errorf("BatchVerify(nil) = %v, %v; want none, nil", vs, err)
		}
		if client.Calls() != before {
			t.Error("an empty batch made a call")
		}
	})
}

func TestClient_BatchVerify_Errors(t *testing.T) {
	t.Parallel()
	ps := []credential.Presented{{Credential: credPrefix + "a"}, {Credential: credPrefix + "b"}}
	t.Run("wrong count", func(t *testing.T) {
		t.Parallel()
		fv := &fakeVerifier{batch: func(context.Context, *sidecarpb.BatchVerifyRequest) (*sidecarpb.BatchVerifyResponse, error) {
			return &sidecarpb.BatchVerifyResponse{Results: []*sidecarpb.VerifyResponse{apiconv.SidecarResponse(keyResult(), nil)}}, nil
		}}
		srv := newTestServer(t, fv, nil)
		client, _ := newTestClient(t, srv.addr, upstream.Options{})
		if vs, err := client.BatchVerify(t.Context(), ps); !errors.Is(err, credential.ErrUnavailable) || vs != nil {
			t.Errorf("BatchVerify = %v, %v; want nil, ErrUnavailable", vs, err)
		}
	})
	t.Run("retried", func(t *testing.T) {
		t.Parallel()
		fv := unavailableThen(1)
		srv := newTestServer(t, fv, nil)
		client, _ := newTestClient(t, srv.addr, upstream.Options{})
		fv.batch = func(context.Context, *sidecarpb.BatchVerifyRequest) (*sidecarpb.BatchVerifyResponse, error) {
			if fv.calls.Load() == 1 {
				return nil, status.Error(codes.Unavailable, "down")
			}
			return &sidecarpb.BatchVerifyResponse{Results: []*sidecarpb.VerifyResponse{
				apiconv.SidecarResponse(keyResult(), nil), apiconv.SidecarResponse(credential.Result{}, credential.ErrNotFound),
			}}, nil
		}
		vs, err := client.BatchVerify(t.Context(), ps)
		if err != nil || len(vs) != 2 || vs[0].Err != nil || !errors.Is(vs[1].Err, credential.ErrNotFound) {
			t.Errorf("BatchVerify = %+v, %v; want valid, not found", vs, err)
		}
		if got := client.Calls(); got != 2 {
			t.Errorf("Calls = %d, want 2", got)
		}
	})
}

func TestClient_JWKS(t *testing.T) {
	t.Parallel()
	key, err := token.GenerateKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner([]token.SigningKey{key}, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	st, err := structpb.NewStruct(signer.PublicJWKS(now))
	if err != nil {
		t.Fatal(err)
	}
	fd := &fakeDerivedKeys{jwks: func(context.Context) (*pb.GetJwksResponse, error) {
		return &pb.GetJwksResponse{Jwks: st}, nil
	}}
	srv := newTestServer(t, nil, fd)
	client, _ := newTestClient(t, srv.addr, upstream.Options{})

	b, err := client.JWKS(t.Context())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	ks, err := token.ParsePublicJWKS(b)
	if err != nil {
		t.Fatalf("ParsePublicJWKS(%s): %v", b, err)
	}
	if ks.Len() != 1 {
		t.Fatalf("key set has %d keys, want 1: %s", ks.Len(), b)
	}
	// The keys are the signer's: a token it signs verifies with them.
	tok, err := signer.SignJWT(token.Claims{
		ID: token.NewID(), Subject: "0b7e1c7a-3f0e-4d4a-9d43-2f1c2b3a4d5e", Issuer: "https://talos.example",
		Tenant: tenant, IssuedAt: now, Expiry: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.VerifyJWT(tok, ks, token.VerifyOptions{Now: now, Tenant: tenant, Issuers: []string{"https://talos.example"}}); err != nil {
		t.Errorf("VerifyJWT with the fetched JWKS: %v", err)
	}
}

func TestClient_JWKS_Errors(t *testing.T) {
	t.Parallel()
	t.Run("no key set", func(t *testing.T) {
		t.Parallel()
		fd := &fakeDerivedKeys{jwks: func(context.Context) (*pb.GetJwksResponse, error) { return &pb.GetJwksResponse{}, nil }}
		srv := newTestServer(t, nil, fd)
		client, _ := newTestClient(t, srv.addr, upstream.Options{})
		if _, err := client.JWKS(t.Context()); !errors.Is(err, credential.ErrUnavailable) {
			t.Errorf("JWKS = %v, want ErrUnavailable", err)
		}
	})
	t.Run("not served", func(t *testing.T) {
		t.Parallel()
		srv := newTestServer(t, nil, &fakeDerivedKeys{jwks: func(context.Context) (*pb.GetJwksResponse, error) {
			return nil, status.Error(codes.Unimplemented, "not in this mode")
		}})
		client, _ := newTestClient(t, srv.addr, upstream.Options{})
		if _, err := client.JWKS(t.Context()); !errors.Is(err, credential.ErrUnimplemented) {
			t.Errorf("JWKS = %v, want ErrUnimplemented", err)
		}
	})
}

func TestClient_TokenPolicy(t *testing.T) {
	t.Parallel()
	expires := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fv := &fakeVerifier{policy: func(context.Context) (*sidecarpb.TokenPolicy, error) {
		return &sidecarpb.TokenPolicy{
			Issuer: "https://talos.example", ClockSkew: durationpb.New(90 * time.Second),
			RetiredIssuers: []*sidecarpb.RetiredIssuer{{Issuer: "https://old.example", ExpireTime: timestamppb.New(expires)}},
		}, nil
	}}
	srv := newTestServer(t, fv, nil)
	client, _ := newTestClient(t, srv.addr, upstream.Options{})
	p, err := client.TokenPolicy(t.Context())
	if err != nil {
		t.Fatalf("TokenPolicy: %v", err)
	}
	if p.Issuer() != "https://talos.example" || p.ClockSkew() != 90*time.Second ||
		!p.Accepts("https://old.example", expires.Add(-time.Second)) || p.Accepts("https://old.example", expires) {
		t.Errorf("TokenPolicy = %q %v %v", p.Issuer(), p.ClockSkew(), p.Retired())
	}
}

func TestClient_TokenPolicy_Errors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		answer func(context.Context) (*sidecarpb.TokenPolicy, error)
		want   error
	}{
		"no issuer": {func(context.Context) (*sidecarpb.TokenPolicy, error) {
			return &sidecarpb.TokenPolicy{ClockSkew: durationpb.New(time.Minute)}, nil
		}, credential.ErrUnavailable},
		"skew out of bounds": {func(context.Context) (*sidecarpb.TokenPolicy, error) {
			return &sidecarpb.TokenPolicy{Issuer: "https://talos.example", ClockSkew: durationpb.New(time.Hour)}, nil
		}, credential.ErrUnavailable},
		"an older control plane": {func(context.Context) (*sidecarpb.TokenPolicy, error) {
			return nil, status.Error(codes.Unimplemented, "unknown method")
		}, credential.ErrUnimplemented},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, &fakeVerifier{policy: tc.answer}, nil)
			client, _ := newTestClient(t, srv.addr, upstream.Options{})
			if p, err := client.TokenPolicy(t.Context()); !errors.Is(err, tc.want) || p != nil {
				t.Errorf("TokenPolicy = %v, %v; want %v", p, err, tc.want)
			}
		})
	}
}
