package deploy_test

import (
	"cmp"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/config"
)

// Without Envoy, these tests stand in for it: for each route of a config they
// build the check Envoy would send (from the config, as Envoy documents it)
// and send it to the real extauthz server. They tie the configs to what
// extauthz reads (context extension keys, requirement headers, the
// path_prefix), not Envoy's own behaviour.

// envoyCheck is one request through Envoy and the status it must end with.
type envoyCheck struct {
	route, method, path string
	header              map[string]string // client request headers, lowercase
	status              int
}

var envoyChecks = []envoyCheck{
	{route: "public", path: "/public/catalog", status: 200},
	{route: "default", path: "/orders", status: 401},
	{route: "default", path: "/orders", header: map[string]string{"x-api-key": "bad"}, status: 401},
	{route: "default", path: "/orders", header: map[string]string{"authorization": "Bearer good"}, status: 200},
	{route: "default", path: "/orders", header: map[string]string{"x-api-key": "noscope"}, status: 200},
	{route: "read", path: "/read/orders", header: map[string]string{"x-api-key": "good"}, status: 200},
	{route: "read", path: "/read/orders", header: map[string]string{"x-api-key": "noscope"}, status: 403},
	{route: "default", path: "/orders", header: map[string]string{"x-api-key": "limited"}, status: 429},
	// A macaroon limited to path=/read holds on paths under /read only,
	// judged on the client's path (not on a path_prefix Envoy adds).
	{route: "read", path: "/read/orders/1", header: map[string]string{"x-api-key": "readonly"}, status: 200},
	{route: "default", path: "/orders", header: map[string]string{"x-api-key": "readonly"}, status: 403},
	{route: "default", path: "/reading", header: map[string]string{"x-api-key": "readonly"}, status: 403},
	// The sidecar's own paths are checks like any other path of the app.
	{route: "default", method: "POST", path: "/v2alpha1/admin/apiKeys:verify", status: 401},
	{route: "default", path: "/health/alive", status: 401},
}

func loadView(t *testing.T, file string) *envoyView {
	t.Helper()
	b, err := loadEnvoy(readYAML(t, file), envoyTypes(t))
	if err != nil {
		t.Fatal(err)
	}
	v, err := newEnvoyView(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func routeNamed(t *testing.T, v *envoyView, name string) *routev3.Route {
	t.Helper()
	i := slices.IndexFunc(v.routes, func(r *routev3.Route) bool { return r.GetName() == name })
	if i < 0 {
		t.Fatalf("no route %s", name)
	}
	return v.routes[i]
}

func newTestServer(t *testing.T, o extauthz.Options) *extauthz.Server {
	t.Helper()
	srv, err := extauthz.New(extauthz.AuthorizerFunc(fakeAuthorizer), o)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestEnvoyConfigs_AgainstSidecar(t *testing.T) {
	t.Parallel()
	t.Run("grpc", func(t *testing.T) {
		t.Parallel()
		v := loadView(t, "envoy/envoy.yaml")
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		newTestServer(t, extauthz.Options{}).Register(g)
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(g.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		client := authv3.NewAuthorizationClient(conn)

		for _, c := range envoyChecks {
			names, ext, _ := v.authzOn(routeNamed(t, v, c.route))
			if len(names) == 0 {
				if c.status != 200 {
					t.Errorf("%s %s: route %s is not checked", c.method, c.path, c.route)
				}
				continue
			}
			resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
					SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7"}}}},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: cmp.Or(c.method, "GET"), Path: c.path, Host: "api.example.com", Headers: c.header}},
				ContextExtensions: ext,
			}})
			if err != nil {
				t.Fatalf("%s: %v", c.path, err)
			}
			got := 200
			if resp.GetStatus().GetCode() != 0 {
				got = int(resp.GetDeniedResponse().GetStatus().GetCode())
			} else if !slices.ContainsFunc(resp.GetOkResponse().GetHeaders(), func(h *corev3.HeaderValueOption) bool {
				return h.GetHeader().GetKey() == "x-talos-key-id"
			}) {
				t.Errorf("%s %v: allowed without x-talos-key-id", c.path, c.header)
			}
			if got != c.status {
				t.Errorf("route %s %s %v: %d, want %d", c.route, c.path, c.header, got, c.status)
			}
		}
	})

	t.Run("http_service", func(t *testing.T) {
		t.Parallel()
		v := loadView(t, "envoy/envoy-http-service.yaml")
		// The sidecar runs with the config shipped beside the Envoy one.
		pc, err := config.LoadProxy([]string{"envoy/talos-proxy-http-service.yaml"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		prefix := pc.Proxy.HTTPPathPrefix
		for name, a := range v.authz {
			if p := a.GetHttpService().GetPathPrefix(); p != prefix {
				t.Errorf("%s: Envoy's path_prefix %q, but the sidecar's proxy.http_path_prefix is %q", name, p, prefix)
			}
		}
		ts := httptest.NewServer(newTestServer(t, extauthz.Options{HTTPPathPrefix: prefix}).HTTPHandler())
		t.Cleanup(ts.Close)
		client := ts.Client()

		for _, c := range envoyChecks {
			names, _, _ := v.authzOn(routeNamed(t, v, c.route))
			if len(names) == 0 {
				if c.status != 200 {
					t.Errorf("%s %s: route %s is not checked", c.method, c.path, c.route)
				}
				continue
			}
			for _, name := range names {
				a := v.authz[name]
				hs := a.GetHttpService()
				req, err := http.NewRequest(cmp.Or(c.method, "GET"), ts.URL+hs.GetPathPrefix()+c.path, http.NoBody)
				if err != nil {
					t.Fatal(err)
				}
				// Envoy sends the allowed client headers (authorization
				// always), then headers_to_add; a forged requirement
				// header must not survive.
				header := map[string]string{"x-talos-tenant": "11111111-1111-1111-1111-111111111111", "x-talos-scopes": ""}
				for k, val := range c.header {
					header[k] = val
				}
				for k, val := range header {
					if k == "authorization" || exactIn(a.GetAllowedHeaders().GetPatterns(), k) {
						req.Header.Set(k, val)
					}
				}
				for _, h := range hs.GetAuthorizationRequest().GetHeadersToAdd() {
					req.Header.Set(h.GetKey(), h.GetValue())
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("route %s (%s) %s %v: %d, want %d", c.route, name, c.path, c.header, resp.StatusCode, c.status)
				}
				if resp.StatusCode == 200 {
					var upstream []string
					for k := range resp.Header {
						if exactIn(hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns(), strings.ToLower(k)) {
							upstream = append(upstream, strings.ToLower(k))
						}
					}
					if !slices.Contains(upstream, "x-talos-key-id") {
						t.Errorf("%s %v: allowed, but x-talos-key-id does not reach the app (got %v)", c.path, c.header, upstream)
					}
				}
			}
		}
	})
}
