package xds_test

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/talos-project/talos/controlplane/xds"
	"github.com/talos-project/talos/pkg/credential"
)

// envoyDefaults are the defaults of the envoy config section, which match
// deploy/envoy/envoy.yaml.
var envoyDefaults = xds.EnvoyOptions{
	ListenerPort: 8080,
	App:          "127.0.0.1:8081",
	Sidecar:      "127.0.0.1:9191",
	Timeout:      250 * time.Millisecond,
}

func mustEnvoyResources(t *testing.T, o xds.EnvoyOptions) (listeners, clusters []types.Resource) {
	t.Helper()
	listeners, clusters, err := xds.EnvoyResources(o)
	if err != nil {
		t.Fatalf("EnvoyResources(%+v): %v", o, err)
	}
	return listeners, clusters
}

// validateDeep applies the protoc-gen-validate rules of m and of every
// message below it, unpacking every Any (typed_config and the like) and
// validating its content too, the way Envoy checks a resource it receives.
// A deprecated field or enum value is an error as well. It returns the type
// URLs of the Anys it unpacked, so a test can tell the walk went inside them.
func validateDeep(path string, m proto.Message) (anys []string, errs []error) {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	} else {
		errs = append(errs, fmt.Errorf("%s: %s has no ValidateAll", path, m.ProtoReflect().Descriptor().FullName()))
	}
	var visit func(path string, m protoreflect.Message)
	visit = func(path string, m protoreflect.Message) {
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
				return
			}
			anys = append(anys, a.GetTypeUrl())
			more, e := validateDeep(path+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", inner)
			anys, errs = append(anys, more...), append(errs, e...)
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			if fd.Options().(*descriptorpb.FieldOptions).GetDeprecated() {
				errs = append(errs, fmt.Errorf("%s is deprecated", p))
			}
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := range v.List().Len() {
					visit(fmt.Sprintf("%s[%d]", p, i), v.List().Get(i).Message())
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
					errs = append(errs, fmt.Errorf("%s: %s is deprecated", p, ev.Name()))
				}
			}
			return true
		})
	}
	visit(path, m.ProtoReflect())
	return anys, errs
}

// envoyView is what the resources say, in the terms of EnvoyOptions.
type envoyView struct {
	Listener      string
	Address       string
	Strip         []string // header-name prefixes removed before anything runs
	Filters       []string // HTTP filters, in order
	AuthzCluster  string
	Timeout       time.Duration
	FailureOpen   bool
	StatusOnError int32
	V3            bool
	Routes        map[string]routeView
	Clusters      map[string]clusterView
}

type routeView struct {
	Prefix, Cluster string
	Scopes          string // talos.scopes, "" when the route sets none
}

type clusterView struct {
	Type     string
	Endpoint string
	HTTP2    bool
}

func unpack[M proto.Message](t *testing.T, a *anypb.Any, m M) M {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("%s: %v", a.GetTypeUrl(), err)
	}
	return m
}

func viewOf(t *testing.T, listeners, clusters []types.Resource) envoyView {
	t.Helper()
	if len(listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(listeners))
	}
	l := listeners[0].(*listenerv3.Listener)
	sa := l.GetAddress().GetSocketAddress()
	v := envoyView{
		Listener: l.GetName(),
		Address:  net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))),
		Routes:   map[string]routeView{},
		Clusters: map[string]clusterView{},
	}
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("listener %v: want one filter chain of one filter", l)
	}
	hcm := unpack(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), new(hcmv3.HttpConnectionManager))
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		for _, m := range unpack(t, ext.GetTypedConfig(), new(earlymutationv3.HeaderMutation)).GetMutations() {
			if km := m.GetRemoveOnMatch().GetKeyMatcher(); km.GetIgnoreCase() {
				v.Strip = append(v.Strip, km.GetPrefix())
			}
		}
	}
	for _, f := range hcm.GetHttpFilters() {
		v.Filters = append(v.Filters, f.GetName())
		if a := new(extauthzv3.ExtAuthz); f.GetTypedConfig().MessageIs(a) {
			unpack(t, f.GetTypedConfig(), a)
			v.AuthzCluster = a.GetGrpcService().GetEnvoyGrpc().GetClusterName()
			v.Timeout = a.GetGrpcService().GetTimeout().AsDuration()
			v.FailureOpen = a.GetFailureModeAllow()
			v.StatusOnError = int32(a.GetStatusOnError().GetCode())
			v.V3 = a.GetTransportApiVersion() == core.ApiVersion_V3
		} else {
			unpack(t, f.GetTypedConfig(), new(routerv3.Router))
		}
	}
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			rv := routeView{Prefix: r.GetMatch().GetPrefix(), Cluster: r.GetRoute().GetCluster()}
			for name, cfg := range r.GetTypedPerFilterConfig() {
				if name != "envoy.filters.http.ext_authz" {
					t.Errorf("route %s: per-filter config for %s", r.GetName(), name)
				}
				rv.Scopes = unpack(t, cfg, new(extauthzv3.ExtAuthzPerRoute)).GetCheckSettings().GetContextExtensions()["talos.scopes"]
			}
			v.Routes[vh.GetName()+"/"+r.GetName()] = rv
		}
	}
	for _, r := range clusters {
		c := r.(*clusterv3.Cluster)
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 || c.GetLoadAssignment().GetClusterName() != c.GetName() {
			t.Fatalf("cluster %s: want a load assignment of one endpoint", c.GetName())
		}
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		cv := clusterView{Type: c.GetType().String(), Endpoint: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))}
		for key, a := range c.GetTypedExtensionProtocolOptions() {
			if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
				t.Errorf("cluster %s: protocol options %s", c.GetName(), key)
			}
			cv.HTTP2 = unpack(t, a, new(upstreamhttpv3.HttpProtocolOptions)).GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
		}
		v.Clusters[c.GetName()] = cv
	}
	return v
}

// defaultView is what envoyDefaults produce; cases change it.
func defaultView() envoyView {
	return envoyView{
		Listener:      "talos_ingress",
		Address:       "0.0.0.0:8080",
		Strip:         []string{"x-talos-"},
		Filters:       []string{"envoy.filters.http.ext_authz", "envoy.filters.http.router"},
		AuthzCluster:  "talos_sidecar",
		Timeout:       250 * time.Millisecond,
		StatusOnError: 503,
		V3:            true,
		Routes:        map[string]routeView{"app/default": {Prefix: "/", Cluster: "app"}},
		Clusters: map[string]clusterView{
			"talos_sidecar": {Type: "STATIC", Endpoint: "127.0.0.1:9191", HTTP2: true},
			"app":           {Type: "STATIC", Endpoint: "127.0.0.1:8081"},
		},
	}
}

func TestEnvoyResources(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*xds.EnvoyOptions)
		want   func(*envoyView)
	}{
		{name: "defaults", mutate: func(*xds.EnvoyOptions) {}, want: func(*envoyView) {}},
		{
			name:   "required scopes",
			mutate: func(o *xds.EnvoyOptions) { o.RequiredScopes = []string{"read", "orders:write"} },
			want: func(v *envoyView) {
				v.Routes["app/default"] = routeView{Prefix: "/", Cluster: "app", Scopes: "read orders:write"}
			},
		},
		{
			name:   "timeout",
			mutate: func(o *xds.EnvoyOptions) { o.Timeout = 1500 * time.Millisecond },
			want:   func(v *envoyView) { v.Timeout = 1500 * time.Millisecond },
		},
		{
			name:   "failure mode allow",
			mutate: func(o *xds.EnvoyOptions) { o.FailureModeAllow = true },
			want:   func(v *envoyView) { v.FailureOpen = true },
		},
		{
			name:   "listener port",
			mutate: func(o *xds.EnvoyOptions) { o.ListenerPort = 10000 },
			want:   func(v *envoyView) { v.Address = "0.0.0.0:10000" },
		},
		{
			name: "names resolve by DNS",
			mutate: func(o *xds.EnvoyOptions) {
				o.App, o.Sidecar = "orders.internal:80", "localhost:9191"
			},
			want: func(v *envoyView) {
				v.Clusters["app"] = clusterView{Type: "STRICT_DNS", Endpoint: "orders.internal:80"}
				v.Clusters["talos_sidecar"] = clusterView{Type: "STRICT_DNS", Endpoint: "localhost:9191", HTTP2: true}
			},
		},
		{
			name:   "IPv6",
			mutate: func(o *xds.EnvoyOptions) { o.App = "[::1]:8081" },
			want:   func(v *envoyView) { v.Clusters["app"] = clusterView{Type: "STATIC", Endpoint: "[::1]:8081"} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := envoyDefaults
			tc.mutate(&o)
			listeners, clusters := mustEnvoyResources(t, o)

			wantAnys := []string{
				"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
				"type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
				"type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
				"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
				"type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
			}
			if len(o.RequiredScopes) > 0 {
				wantAnys = append(wantAnys, "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute")
			}
			var anys []string
			for _, r := range slices.Concat(listeners, clusters) {
				a, errs := validateDeep(cachev3.GetResourceName(r), r)
				anys = append(anys, a...)
				for _, err := range errs {
					t.Error(err)
				}
			}
			slices.Sort(anys)
			slices.Sort(wantAnys)
			if d := cmp.Diff(wantAnys, anys); d != "" {
				t.Errorf("packed messages validated (-want +got):\n%s", d)
			}

			want := defaultView()
			tc.want(&want)
			if d := cmp.Diff(want, viewOf(t, listeners, clusters)); d != "" {
				t.Errorf("resources (-want +got):\n%s", d)
			}
		})
	}
}

func TestEnvoyResources_Invalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*xds.EnvoyOptions)
		want   string
	}{
		{"no listener port", func(o *xds.EnvoyOptions) { o.ListenerPort = 0 }, "listener port 0"},
		{"listener port too high", func(o *xds.EnvoyOptions) { o.ListenerPort = 65536 }, "listener port 65536"},
		{"app without port", func(o *xds.EnvoyOptions) { o.App = "127.0.0.1" }, "app: \"127.0.0.1\" is not host:port"},
		{"app without host", func(o *xds.EnvoyOptions) { o.App = ":8081" }, "app: \":8081\" is not host:port"},
		{"app with a scheme", func(o *xds.EnvoyOptions) { o.App = "http://app:80" }, "app:"},
		{"sidecar port 0", func(o *xds.EnvoyOptions) { o.Sidecar = "127.0.0.1:0" }, "sidecar: \"127.0.0.1:0\": port"},
		{"sidecar port too high", func(o *xds.EnvoyOptions) { o.Sidecar = "127.0.0.1:70000" }, "sidecar:"},
		{"no timeout", func(o *xds.EnvoyOptions) { o.Timeout = 0 }, "timeout 0s"},
		{"negative timeout", func(o *xds.EnvoyOptions) { o.Timeout = -time.Second }, "timeout -1s"},
		{"empty scope", func(o *xds.EnvoyOptions) { o.RequiredScopes = []string{"read", ""} }, "required scope 1"},
		{"scope with a space", func(o *xds.EnvoyOptions) { o.RequiredScopes = []string{"read write"} }, "required scope 0"},
		{"scope with a comma", func(o *xds.EnvoyOptions) { o.RequiredScopes = []string{"read,write"} }, "required scope 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := envoyDefaults
			tc.mutate(&o)
			_, _, err := xds.EnvoyResources(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EnvoyResources = %v, want an error containing %q", err, tc.want)
			}
			if _, err := xds.New(xds.Options{Envoy: &o}); err == nil {
				t.Error("New accepted the options")
			}
		})
	}
}

// TestEnvoyResources_Consistent checks the snapshot rules (go-control-plane's
// Consistent) and the references it does not cover: every cluster the
// listener names exists, and every cluster is named.
func TestEnvoyResources_Consistent(t *testing.T) {
	t.Parallel()
	o := envoyDefaults
	o.RequiredScopes = []string{"read"}
	listeners, clusters := mustEnvoyResources(t, o)
	snap, err := cachev3.NewSnapshot("v", map[resource.Type][]types.Resource{
		resource.ListenerType: listeners,
		resource.ClusterType:  clusters,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("Consistent() = %v", err)
	}

	v := viewOf(t, listeners, clusters)
	named := map[string]bool{v.AuthzCluster: true}
	for _, r := range v.Routes {
		named[r.Cluster] = true
	}
	for name := range named {
		if _, ok := v.Clusters[name]; !ok {
			t.Errorf("the listener names cluster %q, which is not served", name)
		}
	}
	for name := range v.Clusters {
		if !named[name] {
			t.Errorf("cluster %q is served but never used", name)
		}
	}

	// The same options give the same bytes, so the same versions.
	l2, c2 := mustEnvoyResources(t, o)
	for i, r := range slices.Concat(listeners, clusters) {
		a, _ := cachev3.MarshalResource(r)
		b, _ := cachev3.MarshalResource(slices.Concat(l2, c2)[i])
		if string(a) != string(b) {
			t.Errorf("resource %s differs between two calls", cachev3.GetResourceName(r))
		}
	}
}

func mustEnvoySnapshot(t *testing.T, s *xds.Server) *cachev3.Snapshot {
	t.Helper()
	snap, err := s.EnvoySnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatalf("served snapshot: Consistent() = %v", err)
	}
	return snap
}

func TestNew_EnvoySnapshot(t *testing.T) {
	t.Parallel()
	o := envoyDefaults
	snap := mustEnvoySnapshot(t, mustNew(t, xds.Options{Envoy: &o}))
	listeners, clusters := mustEnvoyResources(t, o)
	for typ, want := range map[string][]types.Resource{resource.ListenerType: listeners, resource.ClusterType: clusters} {
		got := snap.GetResources(typ)
		if len(got) != len(want) {
			t.Errorf("%s: %d served, want %d", typ, len(got), len(want))
		}
		for _, w := range want {
			if g := got[cachev3.GetResourceName(w)]; !proto.Equal(g, w) {
				t.Errorf("%s %s served as %v, want %v", typ, cachev3.GetResourceName(w), g, w)
			}
		}
	}

	// The version is a hash of the content: another server with the same
	// options agrees, one with other options does not.
	version := snap.GetVersion(resource.ListenerType)
	if version == "" || snap.GetVersion(resource.ClusterType) != version {
		t.Errorf("versions %q and %q, want one non-empty version", version, snap.GetVersion(resource.ClusterType))
	}
	same := o
	if v := mustEnvoySnapshot(t, mustNew(t, xds.Options{Envoy: &same})).GetVersion(resource.ListenerType); v != version {
		t.Errorf("same options: version %q, want %q", v, version)
	}
	other := o
	other.RequiredScopes = []string{"read"}
	if v := mustEnvoySnapshot(t, mustNew(t, xds.Options{Envoy: &other})).GetVersion(resource.ListenerType); v == version {
		t.Errorf("other options: same version %q", v)
	}

	if _, err := mustNew(t, xds.Options{}).EnvoySnapshot(); err == nil {
		t.Error("a server without Envoy options holds an Envoy snapshot")
	}
}

// envoyUpdate is one Listener or Cluster delta response, unpacked.
type envoyUpdate struct {
	nonce     string
	resources map[string]proto.Message
	versions  map[string]string
	removed   []string
}

func decodeEnvoy(t *testing.T, r *discovery.DeltaDiscoveryResponse) envoyUpdate {
	t.Helper()
	if r.GetNonce() == "" {
		t.Fatal("response without a nonce")
	}
	u := envoyUpdate{nonce: r.GetNonce(), resources: map[string]proto.Message{}, versions: map[string]string{}, removed: r.GetRemovedResources()}
	for _, res := range r.GetResources() {
		if got := res.GetResource().GetTypeUrl(); got != r.GetTypeUrl() {
			t.Fatalf("%s response holds a %s", r.GetTypeUrl(), got)
		}
		m, err := res.GetResource().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetName() != cachev3.GetResourceName(m) || res.GetVersion() == "" {
			t.Fatalf("resource %q (version %q) holds %q", res.GetName(), res.GetVersion(), cachev3.GetResourceName(m))
		}
		u.resources[res.GetName()] = m
		u.versions[res.GetName()] = res.GetVersion()
	}
	return u
}

func byName(rs []types.Resource) map[string]proto.Message {
	out := map[string]proto.Message{}
	for _, r := range rs {
		out[cachev3.GetResourceName(r)] = r
	}
	return out
}

// subscribeEnvoy sends what Envoy sends on a new delta ADS stream with LDS and
// CDS over ADS (plus the invalidation subscription of a sidecar), and returns
// the first response of each type.
func subscribeEnvoy(t *testing.T, c *deltaClient, node string, known map[string]map[string]string) (map[string]envoyUpdate, update) {
	t.Helper()
	for i, typ := range []string{resource.ClusterType, resource.ListenerType, xds.InvalidationType} {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, InitialResourceVersions: known[typ]}
		if i == 0 {
			req.Node = &core.Node{Id: node}
		}
		c.send(req)
	}
	envoy := map[string]envoyUpdate{}
	var inv update
	for range 3 {
		r := c.next()
		switch typ := r.GetTypeUrl(); typ {
		case resource.ListenerType, resource.ClusterType:
			if _, dup := envoy[typ]; dup {
				t.Fatalf("two %s responses", typ)
			}
			envoy[typ] = decodeEnvoy(t, r)
		case xds.InvalidationType:
			inv = decode(t, r)
		default:
			t.Fatalf("response of type %s", typ)
		}
	}
	for typ, u := range envoy {
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: u.nonce})
	}
	c.ack(inv)
	return envoy, inv
}

// TestServer_EnvoyDelta is an Envoy on a delta ADS stream: listeners and
// clusters come on the same stream as the invalidations, which keep flowing.
func TestServer_EnvoyDelta(t *testing.T) {
	t.Parallel()
	o := envoyDefaults
	o.RequiredScopes = []string{"read"}
	s := mustNew(t, xds.Options{Envoy: &o})
	conn := newTestServer(t, s)
	listeners, clusters := mustEnvoyResources(t, o)
	want := map[string]map[string]proto.Message{resource.ListenerType: byName(listeners), resource.ClusterType: byName(clusters)}

	c := openDelta(t, conn)
	got, inv := subscribeEnvoy(t, c, "envoy-1", nil)
	if hb := inv.heartbeat(); hb == nil || hb.GetSeq() != 0 {
		t.Errorf("invalidation response %v, want the heartbeat", inv.invs)
	}
	for typ, w := range want {
		if d := cmp.Diff(w, got[typ].resources, protocmp.Transform()); d != "" {
			t.Errorf("%s (-want +got):\n%s", typ, d)
		}
	}

	// Invalidations keep coming on the same stream, alone.
	s.Publish([]credential.Event{event(1, "t", "k", credential.EventRevoked)})
	r := c.next()
	if r.GetTypeUrl() != xds.InvalidationType {
		t.Fatalf("after Publish: a %s response", r.GetTypeUrl())
	}
	if u := decode(t, r); u.invs["t/k"] == nil {
		t.Errorf("after Publish got %v, want t/k", u.invs)
	}

	// Another node gets the same resources at the same versions.
	other, _ := subscribeEnvoy(t, openDelta(t, conn), "envoy-2", nil)
	known := map[string]map[string]string{}
	for typ, u := range got {
		if d := cmp.Diff(u.versions, other[typ].versions); d != "" {
			t.Errorf("%s versions of envoy-1 and envoy-2 (-1 +2):\n%s", typ, d)
		}
		known[typ] = u.versions
	}

	// An Envoy that reconnects holding them is sent nothing new.
	c.close()
	again, _ := subscribeEnvoy(t, openDelta(t, conn), "envoy-1", known)
	for typ, u := range again {
		if len(u.resources) != 0 || len(u.removed) != 0 {
			t.Errorf("%s after reconnecting up to date: %d resources, removed %v; want none", typ, len(u.resources), u.removed)
		}
	}
	poll(t, "two streams", func() bool { return s.Streams() == 2 })
}

// TestServer_EnvoySotW is an Envoy on a state-of-the-world ADS stream.
func TestServer_EnvoySotW(t *testing.T) {
	t.Parallel()
	o := envoyDefaults
	s := mustNew(t, xds.Options{Envoy: &o})
	version := mustEnvoySnapshot(t, s).GetVersion(resource.ClusterType)
	listeners, clusters := mustEnvoyResources(t, o)

	stream, err := discovery.NewAggregatedDiscoveryServiceClient(newTestServer(t, s)).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string][]types.Resource{resource.ClusterType: clusters, resource.ListenerType: listeners} {
		if err := stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "sotw"}, TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTypeUrl() != typ || resp.GetVersionInfo() != version {
			t.Errorf("response %s version %q, want %s version %q", resp.GetTypeUrl(), resp.GetVersionInfo(), typ, version)
		}
		got := map[string]proto.Message{}
		for _, a := range resp.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			got[cachev3.GetResourceName(m)] = m
		}
		if d := cmp.Diff(byName(want), got, protocmp.Transform()); d != "" {
			t.Errorf("%s (-want +got):\n%s", typ, d)
		}
	}
}

// TestServer_EnvoyOff: without Options.Envoy, a stream asking for listeners
// or clusters fails with Unimplemented, invalidations included, as for any
// type the server does not serve; with it, other Envoy types still fail.
func TestServer_EnvoyOff(t *testing.T) {
	t.Parallel()
	o := envoyDefaults
	for _, tc := range []struct {
		name, typ string
		opts      xds.Options
		want      string
	}{
		{"listeners without Envoy options", resource.ListenerType, xds.Options{}, "serves no Envoy resources"},
		{"clusters without Envoy options", resource.ClusterType, xds.Options{}, "serves no Envoy resources"},
		{"routes with Envoy options", resource.RouteType, xds.Options{Envoy: &o}, resource.RouteType + " is not served"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustNew(t, tc.opts)
			c := connect(t, newTestServer(t, s), "envoy-1", nil, nil)
			c.ack(c.recv())
			c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: tc.typ})
			select {
			case r := <-c.resps:
				t.Fatalf("got a %s response, want the stream to fail", r.GetTypeUrl())
			case err := <-c.err:
				if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("stream ended with %v, want Unimplemented saying %q", err, tc.want)
				}
			case <-time.After(waitFor):
				t.Fatal("stream still open")
			}
		})
	}
}
