package xds

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// EnvoyOptions describes the Envoy resources a Server serves beside the
// invalidations, to Envoys whose bootstrap takes listeners and clusters from
// the control plane over ADS (deploy/envoy/envoy-ads.yaml). Each Envoy runs
// next to a talos proxy: its one listener asks that proxy over ext_authz gRPC
// before it routes a request to the protected service. There are no
// defaults (config.Defaults holds them); see [EnvoyResources] for the rules.
type EnvoyOptions struct {
	// ListenerPort is where Envoy listens for application traffic, on
	// 0.0.0.0; 1 to 65535.
	ListenerPort uint32
	// App is the host:port of the protected service (cluster "app").
	App string
	// Sidecar is the host:port of the local talos proxy's ext_authz gRPC
	// listener (cluster "talos_sidecar").
	Sidecar string
	// Timeout bounds one ext_authz check; it must be greater than 0.
	Timeout time.Duration
	// FailureModeAllow lets a request through when the check itself fails
	// (sidecar unreachable, timeout, error). False fails closed: such a
	// request is answered 503.
	FailureModeAllow bool
	// RequiredScopes are the scopes a key must hold on every request, sent to
	// the sidecar as the context extension talos.scopes. Empty means any
	// valid key. A scope must not be empty nor hold a space or a comma, the
	// separators of talos.scopes.
	RequiredScopes []string
}

// Names and fixed settings of the Envoy resources.
const (
	envoyListener      = "talos_ingress"
	envoySidecar       = "talos_sidecar"
	envoyApp           = "app"
	envoyRoute         = "default"
	earlyHeaderMutator = "envoy.http.early_header_mutation.header_mutation"
	http2OptionsKey    = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	scopesExtension    = "talos.scopes"
	// talosHeaderPrefix starts every header the sidecar adds to an allowed
	// request, with its default proxy.headers.prefix. A client's own are
	// removed by prefix before anything runs, so the app only ever sees the
	// sidecar's, the metadata headers (x-talos-meta-*) included.
	talosHeaderPrefix = "x-talos-"
	// The sidecar is local and the connection is kept; the app may take
	// longer to accept. As in deploy/envoy/envoy.yaml.
	sidecarConnectTimeout = 250 * time.Millisecond
	appConnectTimeout     = time.Second
)

// EnvoyResources returns the resources a Server with Options.Envoy set to o
// serves to every Envoy:
//
//   - the listener talos_ingress on 0.0.0.0:ListenerPort, whose HTTP
//     connection manager removes client-sent x-talos-* headers first
//     (early header mutation), then runs the ext_authz filter (gRPC to the
//     cluster talos_sidecar, transport API v3, Timeout, FailureModeAllow,
//     503 when the check fails) and the router, with an inline route
//     configuration sending every path to the cluster app (and, when
//     RequiredScopes is set, talos.scopes to the sidecar);
//   - the clusters talos_sidecar (HTTP/2, as gRPC needs) and app, each with
//     one endpoint: STATIC for an IP address, STRICT_DNS for a name.
//
// Every resource and every message packed in one has passed its
// protoc-gen-validate rules (ValidateAll), and every cluster the listener
// names is one of the clusters. It fails when o breaks a rule of
// [EnvoyOptions] or when an address is one Envoy would reject. The result is
// a function of o only, and the caller owns it.
func EnvoyResources(o EnvoyOptions) (listeners, clusters []types.Resource, err error) {
	if err := o.check(); err != nil {
		return nil, nil, err
	}
	var p packer
	l := ingressListener(o, &p)
	sidecar := endpointCluster(envoySidecar, o.Sidecar, sidecarConnectTimeout)
	sidecar.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		http2OptionsKey: p.pack(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		}),
	}
	app := endpointCluster(envoyApp, o.App, appConnectTimeout)
	if p.err != nil {
		return nil, nil, fmt.Errorf("xds: envoy: %w", p.err)
	}
	for _, r := range []validated{l, sidecar, app} {
		if err := r.ValidateAll(); err != nil {
			return nil, nil, fmt.Errorf("xds: envoy: %w", err)
		}
	}
	return []types.Resource{l}, []types.Resource{sidecar, app}, nil
}

// check applies the rules of EnvoyOptions.
func (o EnvoyOptions) check() error {
	var errs []error
	if o.ListenerPort < 1 || o.ListenerPort > 65535 {
		errs = append(errs, fmt.Errorf("listener port %d is not between 1 and 65535", o.ListenerPort))
	}
	for _, a := range []struct{ what, addr string }{{"app", o.App}, {"sidecar", o.Sidecar}} {
		if _, _, err := splitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.what, err))
		}
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s is not greater than 0", o.Timeout))
	}
	for i, s := range o.RequiredScopes {
		if s == "" || strings.ContainsAny(s, ", \t\r\n") {
			errs = append(errs, fmt.Errorf("required scope %d (%q) is empty or holds a space or a comma", i, s))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xds: envoy: %w", err)
	}
	return nil
}

// splitHostPort splits an address to dial: a non-empty host without spaces
// or slashes (no scheme, no path) and a port from 1 to 65535.
func splitHostPort(addr string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "/ \t\r\n") {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q: port is not between 1 and 65535", addr)
	}
	return host, uint32(n), nil
}

// validated is a message with protoc-gen-validate rules, as every Envoy
// message is.
type validated interface {
	proto.Message
	ValidateAll() error
}

// packer validates messages and packs them into Anys, keeping the first
// error, so that building a resource reads as one expression.
type packer struct{ err error }

func (p *packer) pack(m validated) *anypb.Any {
	if p.err != nil {
		return nil
	}
	if err := m.ValidateAll(); err != nil {
		p.err = err
		return nil
	}
	// Deterministic, so that the content hash (the snapshot version) is the
	// same on every replica and after a restart.
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		p.err = err
		return nil
	}
	return a
}

func ingressListener(o EnvoyOptions, p *packer) *listenerv3.Listener {
	route := &routev3.Route{
		Name:  envoyRoute,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: envoyApp},
		}},
	}
	if len(o.RequiredScopes) > 0 {
		route.TypedPerFilterConfig = map[string]*anypb.Any{
			wellknown.HTTPExternalAuthorization: p.pack(&extauthzv3.ExtAuthzPerRoute{
				Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{
					ContextExtensions: map[string]string{scopesExtension: strings.Join(o.RequiredScopes, " ")},
				}},
			}),
		}
	}
	authz := p.pack(&extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: envoySidecar}},
			Timeout:         durationpb.New(o.Timeout),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    o.FailureModeAllow,
		// 503, not Envoy's default 403, when the check itself fails, so a
		// client can tell an outage from a denial.
		StatusOnError: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	})
	strip := p.pack(&earlymutationv3.HeaderMutation{Mutations: []*mutationv3.HeaderMutation{{
		Action: &mutationv3.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationv3.HeaderMutation_RemoveOnMatch{
			KeyMatcher: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: talosHeaderPrefix},
				IgnoreCase:   true,
			},
		}},
	}}})
	hcm := p.pack(&hcmv3.HttpConnectionManager{
		StatPrefix: envoyListener,
		// Route on the normalised path, as deploy/envoy/envoy.yaml does.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		UseRemoteAddress:             wrapperspb.Bool(true),
		EarlyHeaderMutationExtensions: []*corev3.TypedExtensionConfig{{
			Name:        earlyHeaderMutator,
			TypedConfig: strip,
		}},
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: envoyListener,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    envoyApp,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{route},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: wellknown.HTTPExternalAuthorization, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: authz}},
			{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: p.pack(&routerv3.Router{})}},
		},
	})
	return &listenerv3.Listener{
		Name:    envoyListener,
		Address: socketAddress("0.0.0.0", o.ListenerPort),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
			}},
		}},
	}
}

// endpointCluster returns a cluster of one endpoint at addr, which check has
// accepted.
func endpointCluster(name, addr string, connectTimeout time.Duration) *clusterv3.Cluster {
	host, port, _ := splitHostPort(addr)
	// A STATIC cluster takes IP addresses only; a name is resolved, and
	// re-resolved, by a STRICT_DNS one.
	typ := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(host) != nil {
		typ = clusterv3.Cluster_STATIC
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(host, port),
					}},
				}},
			}},
		},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// envoyNode is the one key of the Envoy snapshot cache: every node gets the
// same resources, so the cache holds one snapshot and one status entry, however
// many Envoys connect.
const envoyNode = "envoy"

type sameNode struct{}

func (sameNode) ID(*corev3.Node) string { return envoyNode }

// newEnvoySnapshot returns the consistent snapshot of o's resources,
// versioned by a hash of their content: the same options give the same
// version on every replica and after a restart, so a reconnecting Envoy that
// already holds them is not sent them again.
func newEnvoySnapshot(o EnvoyOptions) (*cachev3.Snapshot, error) {
	listeners, clusters, err := EnvoyResources(o)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, r := range append(append([]types.Resource(nil), listeners...), clusters...) {
		b, err := cachev3.MarshalResource(r)
		if err != nil {
			return nil, fmt.Errorf("xds: envoy: %w", err)
		}
		h.Write(binary.AppendUvarint(nil, uint64(len(b))))
		h.Write(b)
	}
	version := hex.EncodeToString(h.Sum(nil))[:16]
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: listeners,
		resource.ClusterType:  clusters,
	})
	if err != nil {
		return nil, fmt.Errorf("xds: envoy: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("xds: envoy: %w", err)
	}
	return snap, nil
}

// newEnvoyCache returns a snapshot cache that serves o's resources to every
// node.
func newEnvoyCache(o EnvoyOptions, logger cpLogger) (cachev3.SnapshotCache, error) {
	snap, err := newEnvoySnapshot(o)
	if err != nil {
		return nil, err
	}
	// ads: a state-of-the-world client is answered only once every resource
	// it names exists, as ADS clients expect.
	c := cachev3.NewSnapshotCache(true, sameNode{}, logger)
	if err := c.SetSnapshot(context.Background(), envoyNode, snap); err != nil {
		return nil, fmt.Errorf("xds: envoy: %w", err)
	}
	return c, nil
}
