package deploy_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/talos-project/talos/controlplane/xds"
	"github.com/talos-project/talos/pkg/config"
)

// envoy-ads.yaml holds no listener: it takes LDS and CDS over ADS from the
// control plane. The checks below cover the bootstrap (loaded and validated
// like the static ones, then the facts of the xDS wiring) and, since the
// listener is not in the file, the resources the control plane serves with
// the default envoy section, held to the facts envoy.yaml is held to.

const adsConfig = "envoy/envoy-ads.yaml"

// checkEnvoyADS loads a bootstrap and checks that it takes its listeners and
// clusters from the control plane's gRPC port over delta ADS.
func checkEnvoyADS(doc any, types *protoregistry.Types) error {
	b, err := loadEnvoy(doc, types)
	if err != nil {
		return err
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if b.GetNode().GetId() == "" || b.GetNode().GetCluster() == "" {
		fail("node id and cluster must be set")
	}
	dyn := b.GetDynamicResources()
	ads := dyn.GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC {
		fail("ads_config api_type %v, want DELTA_GRPC", ads.GetApiType())
	}
	if ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		fail("ads_config transport_api_version %v, want V3", ads.GetTransportApiVersion())
	}
	for name, src := range map[string]*corev3.ConfigSource{"lds_config": dyn.GetLdsConfig(), "cds_config": dyn.GetCdsConfig()} {
		if src.GetAds() == nil {
			fail("%s does not come over ADS", name)
		}
		if src.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			fail("%s resource_api_version %v, want V3", name, src.GetResourceApiVersion())
		}
	}
	if len(b.GetStaticResources().GetListeners()) > 0 {
		fail("static listeners: the listener comes from the control plane")
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
		if c.GetName() == "talos_sidecar" || c.GetName() == "app" {
			fail("static cluster %s clashes with a cluster the control plane serves", c.GetName())
		}
	}
	svcs := ads.GetGrpcServices()
	if len(svcs) != 1 {
		fail("ads_config has %d gRPC services, want 1", len(svcs))
		return errors.New(strings.Join(problems, "\n"))
	}
	name := svcs[0].GetEnvoyGrpc().GetClusterName()
	c, ok := clusters[name]
	if !ok {
		fail("ads_config names cluster %q, which is not a static cluster", name)
		return errors.New(strings.Join(problems, "\n"))
	}
	if _, port, _ := net.SplitHostPort(endpointOf(c)); port != "4421" {
		fail("cluster %s endpoint %q, want the control plane's gRPC port 4421", name, endpointOf(c))
	}
	opts := new(upstreamhttpv3.HttpProtocolOptions)
	po := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if po.UnmarshalTo(opts) != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		fail("cluster %s does not speak HTTP/2", name)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

func TestEnvoyADSConfig(t *testing.T) {
	t.Parallel()
	if err := checkEnvoyADS(readYAML(t, adsConfig), envoyTypes(t)); err != nil {
		t.Fatal(err)
	}
}

// TestEnvoyADSConfig_Broken proves the check catches what it is for.
func TestEnvoyADSConfig_Broken(t *testing.T) {
	t.Parallel()
	const (
		ads     = "dynamic_resources/ads_config"
		cluster = "static_resources/clusters/0"
	)
	cases := []struct {
		name, path string
		value      any
		want       string
	}{
		{"unknown field", ads + "/api_typ", "GRPC", "unknown field"},
		{"state of the world", ads + "/api_type", "GRPC", "want DELTA_GRPC"},
		{"v2 transport", ads + "/transport_api_version", "V2", "V2"},
		{"listeners from a file", "dynamic_resources/lds_config",
			map[string]any{"path_config_source": map[string]any{"path": "/etc/envoy/lds.yaml"}, "resource_api_version": "V3"},
			"lds_config does not come over ADS"},
		{"clusters at v2", "dynamic_resources/cds_config/resource_api_version", "V2", "V2"},
		{"other port", cluster + "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value",
			4420, "4421"},
		{"control plane over HTTP/1", cluster + "/typed_extension_protocol_options", nil, "HTTP/2"},
		{"missing cluster", ads + "/grpc_services/0/envoy_grpc/cluster_name", "talos", "not a static cluster"},
		{"static cluster shadows a served one", cluster + "/name", "app", "clashes"},
		{"no node", "node", nil, "node id"},
	}
	types := envoyTypes(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			doc := readYAML(t, adsConfig)
			setPath(t, doc, c.path, c.value)
			err := checkEnvoyADS(doc, types)
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

// servedBootstrap returns what an Envoy holds after taking LDS and CDS from a
// control plane with this envoy section, as static resources, the way
// cmd/talos maps the section to xds.EnvoyOptions.
func servedBootstrap(t *testing.T, e config.EnvoyXDS) *bootstrapv3.Bootstrap {
	t.Helper()
	listeners, clusters, err := xds.EnvoyResources(xds.EnvoyOptions{
		ListenerPort:     uint32(e.ListenerPort),
		App:              e.App,
		Sidecar:          e.Sidecar,
		Timeout:          e.Timeout.D(),
		FailureModeAllow: e.FailureModeAllow,
		RequiredScopes:   e.RequiredScopes,
	})
	if err != nil {
		t.Fatal(err)
	}
	sr := new(bootstrapv3.Bootstrap_StaticResources)
	for _, l := range listeners {
		sr.Listeners = append(sr.Listeners, l.(*listenerv3.Listener))
	}
	for _, c := range clusters {
		sr.Clusters = append(sr.Clusters, c.(*clusterv3.Cluster))
	}
	return &bootstrapv3.Bootstrap{StaticResources: sr}
}

// TestEnvoyADS_ServedResources holds the served resources to envoy.yaml's
// facts: the same listener port, app and sidecar endpoints, timeout, fail
// closed with 503, gRPC v3 over HTTP/2, client x-talos-* headers stripped,
// normalised paths, every route checked, with the configured scopes.
func TestEnvoyADS_ServedResources(t *testing.T) {
	t.Parallel()
	types := envoyTypes(t)
	static := loadView(t, "envoy/envoy.yaml")
	for _, tc := range []struct {
		name   string
		scopes []string
		want   string
	}{
		{name: "defaults"},
		{name: "required scopes", scopes: []string{"read", "write"}, want: "read write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := config.Defaults().Envoy
			e.RequiredScopes = tc.scopes
			b := servedBootstrap(t, e)
			var errs []error
			validateDeep("served", b, types, &errs)
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			v, err := newEnvoyView(b)
			if err != nil {
				t.Fatal(err)
			}
			fail := func(format string, args ...any) { t.Errorf(format, args...) }

			if v.listenPort != static.listenPort {
				fail("listener port %d, envoy.yaml has %d", v.listenPort, static.listenPort)
			}
			if got, want := endpointOf(v.clusters["app"]), endpointOf(static.clusters["app"]); got != want {
				fail("app endpoint %q, envoy.yaml has %q", got, want)
			}
			if !v.hcm.GetNormalizePath().GetValue() || !v.hcm.GetMergeSlashes() || v.hcm.GetPathWithEscapedSlashesAction() != static.hcm.GetPathWithEscapedSlashesAction() {
				fail("paths are not normalised as in envoy.yaml")
			}
			for _, h := range talosRequestHeaders {
				if !stripped(t, v, h) || !stripped(t, v, strings.ToUpper(h)) {
					fail("a client's %s reaches the sidecar and the app", h)
				}
			}
			if !stripped(t, v, "x-talos-meta-team") {
				fail("a client's metadata header reaches the app")
			}
			if stripped(t, v, "authorization") || stripped(t, v, "x-api-key") {
				fail("the credential headers are stripped")
			}
			if !v.routerLast || len(v.others) > 0 || len(v.authz) != 1 {
				fail("filters: want ext_authz then the router (others %v)", v.others)
			}
			for name, a := range v.authz {
				checkExtAuthz(name, a, grpcMode, v.clusters, fail)
			}
			if len(v.routes) == 0 {
				fail("no routes")
			}
			for _, r := range v.routes {
				names, ext, problems := v.authzOn(r)
				for _, p := range problems {
					fail("%s", p)
				}
				if len(names) == 0 {
					fail("route %s is not checked", r.GetName())
				}
				if ext["talos.scopes"] != tc.want {
					fail("route %s sends talos.scopes %q, want %q", r.GetName(), ext["talos.scopes"], tc.want)
				}
				if _, ok := v.clusters[r.GetRoute().GetCluster()]; !ok {
					fail("route %s: no cluster %q", r.GetName(), r.GetRoute().GetCluster())
				}
			}
		})
	}
}

// stripped reports whether the early header mutations remove a client's
// header of this name.
func stripped(t *testing.T, v *envoyView, header string) bool {
	t.Helper()
	for _, ext := range v.hcm.GetEarlyHeaderMutationExtensions() {
		hm := new(earlymutationv3.HeaderMutation)
		if err := ext.GetTypedConfig().UnmarshalTo(hm); err != nil {
			t.Fatal(err)
		}
		for _, m := range hm.GetMutations() {
			if m.GetRemove() != "" && strings.EqualFold(m.GetRemove(), header) {
				return true
			}
			km := m.GetRemoveOnMatch().GetKeyMatcher()
			if p := km.GetPrefix(); p != "" {
				h := header
				if km.GetIgnoreCase() {
					h, p = strings.ToLower(h), strings.ToLower(p)
				}
				if strings.HasPrefix(h, p) {
					return true
				}
			}
		}
	}
	return false
}
