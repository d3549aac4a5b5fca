package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
)

// Envoy and its config checker are not available on the build machines, so
// the Envoy configs are checked the way Envoy starts to check them: decoded
// strictly into the v3 Bootstrap proto (unknown fields and unknown typed_config
// types fail), then validated with the protoc-gen-validate rules Envoy applies,
// inside every typed_config too. On top come the facts this deployment relies
// on, which no proto rule expresses (fail closed, the timeout, which routes
// are checked and with which scopes, the cluster wiring).

// envoyTypes resolves the typed_config types the configs may use. A config
// naming any other type fails to load, so a new extension is added here on
// purpose.
func envoyTypes(t testing.TB) *protoregistry.Types {
	t.Helper()
	types := new(protoregistry.Types)
	for _, m := range []proto.Message{
		&hcmv3.HttpConnectionManager{},
		&extauthzv3.ExtAuthz{},
		&extauthzv3.ExtAuthzPerRoute{},
		&routerv3.Router{},
		&routev3.FilterConfig{},
		&upstreamhttpv3.HttpProtocolOptions{},
		&earlymutationv3.HeaderMutation{},
	} {
		if err := types.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			t.Fatal(err)
		}
	}
	return types
}

// loadEnvoy decodes a YAML bootstrap strictly and validates it deeply: the
// PGV rules of the bootstrap and of every message packed in an Any, and no
// deprecated field or enum value anywhere (Envoy warns about those, or
// refuses them once they are fatal by default).
func loadEnvoy(doc any, types *protoregistry.Types) (*bootstrapv3.Bootstrap, error) {
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	b := new(bootstrapv3.Bootstrap)
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var errs []error
	validateDeep("bootstrap", b, types, &errs)
	return b, errors.Join(errs...)
}

func validateDeep(path string, m proto.Message, types *protoregistry.Types, errs *[]error) {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	var visit func(path string, m protoreflect.Message)
	walk := func(path string, m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			if fd.Options().(*descriptorpb.FieldOptions).GetDeprecated() {
				*errs = append(*errs, fmt.Errorf("%s is deprecated", p))
			}
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i, l := 0, v.List(); i < l.Len(); i++ {
					visit(fmt.Sprintf("%s[%d]", p, i), l.Get(i).Message())
				}
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
						visit(fmt.Sprintf("%s[%s]", p, k), mv.Message())
						return true
					})
				}
			case fd.Message() != nil:
				visit(p, v.Message())
			case fd.Enum() != nil && !fd.IsList():
				ev := fd.Enum().Values().ByNumber(v.Enum())
				if ev != nil && ev.Options().(*descriptorpb.EnumValueOptions).GetDeprecated() {
					*errs = append(*errs, fmt.Errorf("%s: %s is deprecated", p, ev.Name()))
				}
			}
			return true
		})
	}
	visit = func(path string, m protoreflect.Message) {
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			walk(path, m)
			return
		}
		mt, err := types.FindMessageByURL(a.GetTypeUrl())
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %s: %w", path, a.GetTypeUrl(), err))
			return
		}
		inner := mt.New().Interface()
		if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(a.GetValue(), inner); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		validateDeep(path+"<"+string(mt.Descriptor().Name())+">", inner, types, errs)
	}
	walk(path, m.ProtoReflect())
}

// envoyMode says which way a config asks the sidecar.
type envoyMode int

const (
	grpcMode envoyMode = iota
	httpMode
)

// routeAuth is what a route gets from ext_authz.
type routeAuth struct {
	Checked bool
	Scopes  string // the required scopes sent to the sidecar
}

// The routes every config must have, and what each requires.
var wantRoutes = map[string]routeAuth{
	"public":  {},
	"read":    {Checked: true, Scopes: "read"},
	"default": {Checked: true},
}

// The client headers the configs strip before routing.
var talosRequestHeaders = []string{
	"x-talos-key-id", "x-talos-actor-id", "x-talos-scopes", "x-talos-tenant",
	"x-talos-credential-type", "x-talos-audiences",
}

// The headers the sidecar sets on an allow, which reach the app.
var talosUpstreamHeaders = talosRequestHeaders[:5]

// envoyView is the part of a loaded config the checks look at.
type envoyView struct {
	listenPort uint32
	hcm        *hcmv3.HttpConnectionManager
	clusters   map[string]*clusterv3.Cluster
	authz      map[string]*extauthzv3.ExtAuthz // the ext_authz instances by filter name
	byDefault  map[string]bool                 // instance runs unless a route disables it
	routerLast bool
	others     []string // filters that are neither ext_authz nor the router
	routes     []*routev3.Route
}

func newEnvoyView(b *bootstrapv3.Bootstrap) (*envoyView, error) {
	v := &envoyView{
		clusters:  map[string]*clusterv3.Cluster{},
		authz:     map[string]*extauthzv3.ExtAuthz{},
		byDefault: map[string]bool{},
		hcm:       new(hcmv3.HttpConnectionManager),
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		v.clusters[c.GetName()] = c
	}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || len(listeners[0].GetFilterChains()) != 1 || len(listeners[0].GetFilterChains()[0].GetFilters()) != 1 {
		return nil, errors.New("want one listener with one filter chain of one filter")
	}
	v.listenPort = listeners[0].GetAddress().GetSocketAddress().GetPortValue()
	if err := listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(v.hcm); err != nil {
		return nil, fmt.Errorf("listener filter: %w", err)
	}
	filters := v.hcm.GetHttpFilters()
	for i, f := range filters {
		a := new(extauthzv3.ExtAuthz)
		switch tc := f.GetTypedConfig(); {
		case tc.MessageIs(a):
			if err := tc.UnmarshalTo(a); err != nil {
				return nil, fmt.Errorf("filter %s: %w", f.GetName(), err)
			}
			v.authz[f.GetName()] = a
			v.byDefault[f.GetName()] = !f.GetDisabled()
		case tc.MessageIs(&routerv3.Router{}):
			v.routerLast = i == len(filters)-1
		default:
			v.others = append(v.others, f.GetName())
		}
	}
	vhosts := v.hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) != 1 {
		return nil, fmt.Errorf("%d virtual hosts, want 1", len(vhosts))
	}
	v.routes = vhosts[0].GetRoutes()
	return v, nil
}

// authzOn returns the ext_authz instances that run on route r, sorted, and
// the context extensions r gives them; problems lists per-route configs that
// match no instance or are not an ExtAuthzPerRoute.
func (v *envoyView) authzOn(r *routev3.Route) (names []string, ext map[string]string, problems []string) {
	active := maps.Clone(v.byDefault)
	ext = map[string]string{}
	for key, cfg := range r.GetTypedPerFilterConfig() {
		if _, ok := v.authz[key]; !ok {
			problems = append(problems, fmt.Sprintf("route %s: per-route config for unknown filter %s", r.GetName(), key))
			continue
		}
		per, enabled := perRoute(cfg)
		if per == nil {
			problems = append(problems, fmt.Sprintf("route %s: %s: not an ExtAuthzPerRoute", r.GetName(), key))
			continue
		}
		active[key] = enabled && !per.GetDisabled()
		if active[key] {
			maps.Copy(ext, per.GetCheckSettings().GetContextExtensions())
		}
	}
	for name, on := range active {
		if on {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, ext, problems
}

// checkEnvoy loads a config and checks the facts of the deployment.
func checkEnvoy(doc any, mode envoyMode, types *protoregistry.Types) error {
	b, err := loadEnvoy(doc, types)
	if err != nil {
		return err
	}
	v, err := newEnvoyView(b)
	if err != nil {
		return err
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if v.listenPort != 8080 {
		fail("listener port %d, want 8080", v.listenPort)
	}
	// A client's x-talos-* headers are removed before anything runs.
	var removed []string
	for _, ext := range v.hcm.GetEarlyHeaderMutationExtensions() {
		hm := new(earlymutationv3.HeaderMutation)
		if ext.GetTypedConfig().UnmarshalTo(hm) == nil {
			for _, m := range hm.GetMutations() {
				removed = append(removed, m.GetRemove())
			}
		}
	}
	for _, h := range talosRequestHeaders {
		if !slices.Contains(removed, h) {
			fail("early header mutation does not remove %s", h)
		}
	}
	if !v.hcm.GetNormalizePath().GetValue() || !v.hcm.GetMergeSlashes() {
		fail("paths are routed unnormalised (normalize_path, merge_slashes)")
	}

	// The filter chain: ext_authz instances, then the router.
	if !v.routerLast {
		fail("the router is not the last filter")
	}
	if len(v.others) > 0 {
		fail("unexpected filters %v", v.others)
	}
	if _, ok := v.authz["envoy.filters.http.ext_authz"]; !ok {
		fail("no ext_authz filter named envoy.filters.http.ext_authz")
	}
	for name, a := range v.authz {
		checkExtAuthz(name, a, mode, v.clusters, fail)
	}

	// Routes: which ext_authz instances run, with which requirements.
	got := map[string]routeAuth{}
	for _, r := range v.routes {
		if _, ok := v.clusters[r.GetRoute().GetCluster()]; !ok {
			fail("route %s: no cluster %q", r.GetName(), r.GetRoute().GetCluster())
		}
		names, ext, ps := v.authzOn(r)
		problems = append(problems, ps...)
		var scopes []string
		if s := ext["talos.scopes"]; s != "" {
			scopes = append(scopes, s)
		}
		for _, name := range names {
			for _, h := range v.authz[name].GetHttpService().GetAuthorizationRequest().GetHeadersToAdd() {
				if strings.EqualFold(h.GetKey(), "x-talos-scopes") {
					scopes = append(scopes, h.GetValue())
				}
			}
		}
		got[r.GetName()] = routeAuth{Checked: len(names) > 0, Scopes: strings.Join(scopes, " ")}
	}
	if d := cmp.Diff(wantRoutes, got); d != "" {
		fail("routes (-want +got):\n%s", d)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// perRoute returns the ExtAuthzPerRoute of a typed_per_filter_config entry,
// bare or wrapped in a FilterConfig, and whether the entry enables the filter.
func perRoute(cfg *anypb.Any) (*extauthzv3.ExtAuthzPerRoute, bool) {
	per := new(extauthzv3.ExtAuthzPerRoute)
	if cfg.MessageIs(per) {
		if cfg.UnmarshalTo(per) != nil {
			return nil, false
		}
		return per, true
	}
	fc := new(routev3.FilterConfig)
	if !cfg.MessageIs(fc) || cfg.UnmarshalTo(fc) != nil || !fc.GetConfig().MessageIs(per) || fc.GetConfig().UnmarshalTo(per) != nil {
		return nil, false
	}
	return per, !fc.GetDisabled()
}

func checkExtAuthz(name string, a *extauthzv3.ExtAuthz, mode envoyMode, clusters map[string]*clusterv3.Cluster, fail func(string, ...any)) {
	if a.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		fail("%s: transport_api_version %v, want V3", name, a.GetTransportApiVersion())
	}
	if a.GetFailureModeAllow() {
		fail("%s: failure_mode_allow is set: the filter fails open", name)
	}
	if a.GetIncludePeerCertificate() {
		fail("%s: include_peer_certificate is set", name)
	}
	if a.GetWithRequestBody() != nil {
		fail("%s: with_request_body is set", name)
	}
	if c := a.GetStatusOnError().GetCode(); c != 503 {
		fail("%s: status_on_error %v, want 503", name, c)
	}
	switch mode {
	case grpcMode:
		g := a.GetGrpcService()
		if d := g.GetTimeout().AsDuration(); d != 250*time.Millisecond {
			fail("%s: grpc_service timeout %v, want 250ms", name, d)
		}
		cn := g.GetEnvoyGrpc().GetClusterName()
		if cn != "talos_sidecar" {
			fail("%s: grpc_service cluster %q, want talos_sidecar", name, cn)
		}
		c := clusters[cn]
		if endpointOf(c) != "127.0.0.1:9191" {
			fail("%s: cluster %s endpoint %q, want 127.0.0.1:9191", name, cn, endpointOf(c))
		}
		opts := new(upstreamhttpv3.HttpProtocolOptions)
		po := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if po.UnmarshalTo(opts) != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			fail("%s: cluster %s does not speak HTTP/2", name, cn)
		}
	case httpMode:
		h := a.GetHttpService()
		if h == nil {
			fail("%s: no http_service", name)
			return
		}
		if d := h.GetServerUri().GetTimeout().AsDuration(); d != 250*time.Millisecond {
			fail("%s: http_service timeout %v, want 250ms", name, d)
		}
		cn := h.GetServerUri().GetCluster()
		if e := endpointOf(clusters[cn]); e != "127.0.0.1:4430" {
			fail("%s: cluster %q endpoint %q, want 127.0.0.1:4430", name, cn, e)
		}
		p := h.GetPathPrefix()
		if p == "" || p == "/" || strings.HasPrefix(p, "/v2alpha1") || strings.HasPrefix(p, "/health") {
			fail("%s: path_prefix %q lets checks reach the sidecar's own paths", name, p)
		}
		for _, want := range []string{"authorization", "x-api-key"} {
			if !exactIn(a.GetAllowedHeaders().GetPatterns(), want) {
				fail("%s: allowed_headers lacks %s", name, want)
			}
		}
		for _, want := range talosUpstreamHeaders {
			if !exactIn(h.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns(), want) {
				fail("%s: allowed_upstream_headers lacks %s", name, want)
			}
		}
	}
}

func exactIn(ms []*matcherv3.StringMatcher, s string) bool {
	return slices.ContainsFunc(ms, func(m *matcherv3.StringMatcher) bool { return m.GetExact() == s })
}

// endpointOf returns the one endpoint of a static cluster as host:port.
func endpointOf(c *clusterv3.Cluster) string {
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		return ""
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
}

func readYAML(t testing.TB, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

var envoyConfigs = []struct {
	file string
	mode envoyMode
}{
	{"envoy/envoy.yaml", grpcMode},
	{"envoy/envoy-http-service.yaml", httpMode},
}

func TestEnvoyConfigs(t *testing.T) {
	t.Parallel()
	types := envoyTypes(t)
	for _, c := range envoyConfigs {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			if err := checkEnvoy(readYAML(t, c.file), c.mode, types); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEnvoyConfigs_Broken proves the check catches what it is for: each case
// breaks one thing in a valid config.
func TestEnvoyConfigs_Broken(t *testing.T) {
	t.Parallel()
	const (
		hcm     = "static_resources/listeners/0/filter_chains/0/filters/0/typed_config"
		authz   = hcm + "/http_filters/0/typed_config"
		routes  = hcm + "/route_config/virtual_hosts/0/routes"
		grpcCfg = "envoy/envoy.yaml"
		httpCfg = "envoy/envoy-http-service.yaml"
	)
	cases := []struct {
		name, file, path string
		value            any
		want             string // in the error
	}{
		{"unknown field", grpcCfg, authz + "/failure_mode_alow", false, "unknown field"},
		{"unknown typed_config type", grpcCfg, hcm + "/http_filters/1/typed_config/@type",
			"type.googleapis.com/envoy.extensions.filters.http.routr.v3.Router", "routr"},
		{"negative connect timeout", grpcCfg, "static_resources/clusters/0/connect_timeout", "-1s", "ConnectTimeout"},
		{"port out of range", grpcCfg,
			"static_resources/clusters/1/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value",
			70000, "PortValue"},
		{"invalid value inside a typed_config", httpCfg, authz + "/http_service/server_uri/timeout", "-0.25s", "Timeout"},
		{"deprecated field", httpCfg, authz + "/http_service/authorization_request/allowed_headers",
			map[string]any{"patterns": []any{map[string]any{"exact": "x-api-key"}}}, "deprecated"},
		{"fail open", grpcCfg, authz + "/failure_mode_allow", true, "fails open"},
		{"other timeout", grpcCfg, authz + "/grpc_service/timeout", "1s", "timeout 1s"},
		{"v2 transport", grpcCfg, authz + "/transport_api_version", "V2", "V2"},
		{"wrong sidecar cluster", grpcCfg, authz + "/grpc_service/envoy_grpc/cluster_name", "app", "want talos_sidecar"},
		{"sidecar over HTTP/1", grpcCfg, "static_resources/clusters/0/typed_extension_protocol_options", nil, "HTTP/2"},
		{"client may set x-talos headers", grpcCfg, hcm + "/early_header_mutation_extensions", nil, "x-talos-key-id"},
		{"public route checked", grpcCfg, routes + "/0/typed_per_filter_config", nil, "routes"},
		{"scope requirement lost", grpcCfg,
			routes + "/1/typed_per_filter_config/envoy.filters.http.ext_authz/check_settings/context_extensions/talos.scopes",
			"write", "routes"},
		{"scoped instance never enabled", httpCfg, routes + "/1/typed_per_filter_config/talos.ext_authz.read/disabled", true, "routes"},
		{"checks reach the verify proxy", httpCfg, authz + "/http_service/path_prefix", "", "path_prefix"},
		{"route to a missing cluster", grpcCfg, routes + "/2/route/cluster", "nowhere", "no cluster"},
	}
	types := envoyTypes(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mode := grpcMode
			if c.file == httpCfg {
				mode = httpMode
			}
			doc := readYAML(t, c.file)
			setPath(t, doc, c.path, c.value)
			err := checkEnvoy(doc, mode, types)
			if err == nil {
				t.Fatal("the broken config passed")
			}
			t.Logf("rejected: %v", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the broken config failed for another reason; want %q in:\n%v", c.want, err)
			}
		})
	}
}

// setPath sets the value at a /-separated path of a decoded YAML document
// (list indexes are numbers); a nil value deletes a map key. Missing maps on
// the way are created; list indexes must exist.
func setPath(t testing.TB, doc any, path string, value any) {
	t.Helper()
	steps := strings.Split(path, "/")
	cur := doc
	for i, s := range steps {
		last := i == len(steps)-1
		switch n := cur.(type) {
		case map[string]any:
			if last {
				if value == nil {
					if _, ok := n[s]; !ok {
						t.Fatalf("%s: nothing to delete", path)
					}
					delete(n, s)
				} else {
					n[s] = value
				}
				return
			}
			next, ok := n[s]
			if !ok {
				next = map[string]any{}
				n[s] = next
			}
			cur = next
		case []any:
			idx, err := strconv.Atoi(s)
			if err != nil || idx < 0 || idx >= len(n) {
				t.Fatalf("%s: bad index %q", path, s)
			}
			if last {
				n[idx] = value
				return
			}
			cur = n[idx]
		default:
			t.Fatalf("%s: %q is not a map or list", path, strings.Join(steps[:i], "/"))
		}
	}
}
