package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
)

// The auth matrix: every surface × every configuration × every caller, with
// real processes (run()) on real sockets. One control plane and one sidecar
// per configuration serve every caller and surface. To extend it (TLS, mTLS,
// roles), add a matrixConfig, a matrixCaller or a matrixSurface, and a row or
// column to matrixWant.

// outcome is what a caller got, transport-neutral.
type outcome string

const (
	served  outcome = "served"          // the method answered (2xx, OK, or its own domain error)
	unauthn outcome = "unauthenticated" // 401 / UNAUTHENTICATED
	denied  outcome = "forbidden"       // 403 / PERMISSION_DENIED
)

const (
	matrixAdminToken   = "matrix-admin-token-long-enough-0123456789"
	matrixSidecarToken = "matrix-sidecar-token-long-enough-012345678"
	matrixWrongToken   = "matrix-wrong-token-long-enough-0123456789"
)

type matrixConfig struct {
	name string
	env  []string // of the control plane
	// admin is the token the test issues keys with ("" when the admin API is
	// open); proxyToken the one its sidecar sends upstream.
	admin, proxyToken string
}

var matrixConfigs = []matrixConfig{
	{name: "no auth"},
	{name: "admin tokens", env: []string{"TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=" + matrixAdminToken},
		admin: matrixAdminToken, proxyToken: matrixAdminToken},
	{name: "sidecar tokens", env: []string{"TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS=" + matrixSidecarToken},
		proxyToken: matrixSidecarToken},
	{name: "both", env: []string{"TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=" + matrixAdminToken, "TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS=" + matrixSidecarToken},
		admin: matrixAdminToken, proxyToken: matrixSidecarToken},
}

// matrixCaller is who calls: the Authorization value it presents (a token
// that a configuration does not list is just a wrong token there).
type matrixCaller struct{ name, authorization string }

var matrixCallers = []matrixCaller{
	{"no token", ""},
	{"wrong token", "Bearer " + matrixWrongToken},
	{"admin token", "Bearer " + matrixAdminToken},
	{"sidecar token", "Bearer " + matrixSidecarToken},
}

// surfaceKind groups surfaces that share one row of expectations.
type surfaceKind string

const (
	kindAdmin   surfaceKind = "admin"   // the admin API
	kindSidecar surfaceKind = "sidecar" // the sidecar protocol: Verifier, xDS
	kindPublic  surfaceKind = "public"  // self-service, JWKS
	kindOpen    surfaceKind = "open"    // health, metrics, the sidecar's own listeners: no credential exists
)

// matrixWant[kind][config] lists the outcomes for the callers, in
// matrixCallers order: no token, wrong, admin, sidecar.
var matrixWant = map[surfaceKind]map[string][4]outcome{
	kindAdmin: {
		"no auth":        {served, served, served, served},
		"admin tokens":   {unauthn, unauthn, served, unauthn},
		"sidecar tokens": {served, served, served, denied}, // open like Ory, but never to a sidecar token
		"both":           {unauthn, unauthn, served, denied},
	},
	kindSidecar: {
		"no auth":        {served, served, served, served},
		"admin tokens":   {unauthn, unauthn, served, unauthn},
		"sidecar tokens": {unauthn, unauthn, unauthn, served},
		"both":           {unauthn, unauthn, served, served},
	},
	kindPublic: {
		"no auth": {served, served, served, served}, "admin tokens": {served, served, served, served},
		"sidecar tokens": {served, served, served, served}, "both": {served, served, served, served},
	},
	kindOpen: {
		"no auth": {served, served, served, served}, "admin tokens": {served, served, served, served},
		"sidecar tokens": {served, served, served, served}, "both": {served, served, served, served},
	},
}

// matrixEnv is what a probe reaches: one control plane, its sidecar, a key.
type matrixEnv struct {
	srv    *testServer
	proxy  *testProxy
	conn   *grpc.ClientConn // to the control plane's gRPC listener
	secret string           // a valid issued key
	// client sends the HTTP probes (the caller's TLS, say); nil is a plain
	// client.
	client *http.Client
}

func (e *matrixEnv) httpClient() *http.Client {
	if e.client != nil {
		return e.client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

type matrixSurface struct {
	name  string
	kind  surfaceKind
	probe func(ctx context.Context, e *matrixEnv, authorization string) (outcome, error)
}

var matrixSurfaces = []matrixSurface{
	{"HTTP admin: list issued keys", kindAdmin, httpProbe("GET", "srv.http", "/v2alpha1/admin/issuedApiKeys", "", 200)},
	{"HTTP admin: verify", kindAdmin, httpProbe("POST", "srv.http", "/v2alpha1/admin/apiKeys:verify", `{"credential":"SECRET"}`, 200)},
	{"HTTP public: self-revoke", kindPublic, httpProbe("POST", "srv.http", "/v2alpha1/apiKeys:selfRevoke", `{"credential":"unknown-credential-0123456789"}`, 404)},
	{"HTTP public: JWKS", kindPublic, httpProbe("GET", "srv.http", "/v2alpha1/derivedKeys/jwks.json", "", 200)},
	{"HTTP public: /.well-known/jwks.json", kindPublic, httpProbe("GET", "srv.http", "/.well-known/jwks.json", "", 200)},
	{"HTTP health", kindOpen, httpProbe("GET", "srv.http", "/health/ready", "", 200)},
	{"gRPC admin: ApiKeys", kindAdmin, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := pb.NewApiKeysClient(e.conn).AdminListIssuedApiKeys(ctx, &pb.ListIssuedApiKeysRequest{})
		return err
	}, codes.OK)},
	{"gRPC public: SelfService", kindPublic, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := pb.NewSelfServiceClient(e.conn).RevokeApiKey(ctx, &pb.SelfRevokeApiKeyRequest{Credential: "unknown-credential-0123456789"})
		return err
	}, codes.NotFound)},
	{"gRPC public: DerivedKeys", kindPublic, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := pb.NewDerivedKeysClient(e.conn).GetJwks(ctx, &pb.GetJwksRequest{})
		return err
	}, codes.OK)},
	{"gRPC health", kindOpen, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}, codes.OK)},
	{"sidecar protocol: Verifier", kindSidecar, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		r, err := sidecarpb.NewVerifierClient(e.conn).Verify(ctx, &sidecarpb.VerifyRequest{Credential: e.secret})
		if err == nil && r.GetKeyId() == "" {
			return fmt.Errorf("verify answered without the key: %v", r)
		}
		return err
	}, codes.OK)},
	{"sidecar protocol: Verifier token policy", kindSidecar, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := sidecarpb.NewVerifierClient(e.conn).GetTokenPolicy(ctx, &sidecarpb.GetTokenPolicyRequest{})
		return err
	}, codes.OK)},
	{"sidecar protocol: xDS delta", kindSidecar, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "matrix"}, TypeUrl: "type.googleapis.com/talos.sidecar.v1.Invalidation"}); err != nil && err != io.EOF {
			return err
		}
		// After io.EOF from Send, Recv has the stream's status.
		_, err = s.Recv()
		return err
	}, codes.OK)},
	{"sidecar protocol: xDS state of the world", kindSidecar, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "matrix"}, TypeUrl: "type.googleapis.com/talos.sidecar.v1.Invalidation"}); err != nil && err != io.EOF {
			return err
		}
		// After io.EOF from Send, Recv has the stream's status.
		_, err = s.Recv()
		return err
	}, codes.OK)},
	{"control-plane metrics", kindOpen, httpProbe("GET", "srv.metrics", "/metrics", "", 200)},
	{"control-plane metrics: health", kindOpen, httpProbe("GET", "srv.metrics", "/health/ready", "", 200)},
	{"sidecar ext_authz Check", kindOpen, func(ctx context.Context, e *matrixEnv, authz string) (outcome, error) {
		// Envoy's connection carries the caller's token as metadata; the
		// credential checked is the request's.
		conn, err := grpc.NewClient(e.proxy.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return "", err
		}
		defer conn.Close()
		if authz != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authz)
		}
		r, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/orders", Host: "app.test", Headers: map[string]string{"x-api-key": e.secret},
			}},
		}})
		if o, ok := grpcOutcome(err); !ok {
			return o, err
		}
		if !allowed(r) {
			return "", fmt.Errorf("a valid key was denied: %v", r)
		}
		return served, nil
	}},
	{"sidecar HTTP check", kindOpen, func(ctx context.Context, e *matrixEnv, authz string) (outcome, error) {
		// The Authorization header would be taken for the credential to
		// check; the caller's token travels as Proxy-Authorization.
		req, _ := http.NewRequestWithContext(ctx, "GET", e.proxy.http+"/orders", nil)
		req.Header.Set("X-Api-Key", e.secret)
		if authz != "" {
			req.Header.Set("Proxy-Authorization", authz)
		}
		return doProbe(e.httpClient(), req, 200)
	}},
	{"sidecar HTTP verify proxy", kindOpen, httpProbe("POST", "proxy.http", "/v2alpha1/admin/apiKeys:verify", `{"credential":"SECRET"}`, 200)},
	{"sidecar metrics", kindOpen, httpProbe("GET", "proxy.metrics", "/metrics", "", 200)},
	{"sidecar metrics: health", kindOpen, httpProbe("GET", "proxy.metrics", "/health/alive", "", 200)},
}

// httpProbe sends method base+path (base names a listener of matrixEnv) with
// body (SECRET replaced by the valid key) and the caller's Authorization; ok
// is the status of an answer.
func httpProbe(method, base, path, body string, ok int) func(context.Context, *matrixEnv, string) (outcome, error) {
	return func(ctx context.Context, e *matrixEnv, authz string) (outcome, error) {
		url := map[string]string{"srv.http": e.srv.http, "srv.metrics": e.srv.metrics, "proxy.http": e.proxy.http, "proxy.metrics": e.proxy.metrics}[base] + path
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(strings.ReplaceAll(body, "SECRET", e.secret))
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return "", err
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		return doProbe(e.httpClient(), req, ok)
	}
}

func doProbe(c *http.Client, req *http.Request, ok int) (outcome, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case ok:
		return served, nil
	case http.StatusUnauthorized:
		return unauthn, nil
	case http.StatusForbidden:
		return denied, nil
	}
	return "", fmt.Errorf("HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
}

// grpcProbe calls fn with the caller's Authorization as metadata; ok is the
// code of an answer.
func grpcProbe(fn func(context.Context, *matrixEnv) error, ok codes.Code) func(context.Context, *matrixEnv, string) (outcome, error) {
	return func(ctx context.Context, e *matrixEnv, authz string) (outcome, error) {
		if authz != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authz)
		}
		err := fn(ctx, e)
		if status.Code(err) == ok {
			return served, nil
		}
		o, _ := grpcOutcome(err)
		if o == "" {
			return "", err
		}
		return o, nil
	}
}

// grpcOutcome classifies an auth refusal; ok=false for any other error.
func grpcOutcome(err error) (outcome, bool) {
	switch status.Code(err) {
	case codes.OK:
		return served, true
	case codes.Unauthenticated:
		return unauthn, false
	case codes.PermissionDenied:
		return denied, false
	}
	return "", false
}

func TestE2E_AuthMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	for _, cfg := range matrixConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			srv := startServer(t, cfg.env...)
			var proxyEnv []string
			if cfg.proxyToken != "" {
				proxyEnv = append(proxyEnv, "TALOS_PROXY_UPSTREAM_TOKEN="+cfg.proxyToken)
			}
			c := sdk(srv.http)
			if cfg.admin != "" {
				c.GetConfig().AddDefaultHeader("Authorization", "Bearer "+cfg.admin)
			}
			secret, _ := issueKey(t, c, "read")
			conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			e := &matrixEnv{srv: srv, proxy: startProxy(t, srv.grpc, proxyEnv...), conn: conn, secret: secret}
			e.proxy.waitFresh(t) // its token works on the xDS stream

			for _, s := range matrixSurfaces {
				want := matrixWant[s.kind][cfg.name]
				for i, caller := range matrixCallers {
					ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
					got, err := s.probe(ctx, e, caller.authorization)
					cancel()
					if err != nil {
						t.Errorf("%s, %s: %v (want %s)", s.name, caller.name, err, want[i])
					} else if got != want[i] {
						t.Errorf("%s, %s: %s, want %s", s.name, caller.name, got, want[i])
					}
				}
			}
			// No token ever reaches a log line.
			for _, tok := range []string{matrixAdminToken, matrixSidecarToken, matrixWrongToken} {
				if strings.Contains(srv.log.String(), tok) || strings.Contains(e.proxy.log.String(), tok) {
					t.Errorf("a token appears in a log")
				}
			}
		})
	}
}
