package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	sidecarpb "github.com/talos-project/talos/pkg/api/talos/sidecar/v1"
	pb "github.com/talos-project/talos/pkg/api/talos/v2alpha1"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// The TLS dimension of the auth matrix (e2e_authmatrix_test.go): listeners
// over TLS and mTLS, callers that differ by what they prove (a certificate,
// a role token, both, neither, a certificate the server must refuse) and the
// surfaces of the matrix plus every admin method by name. The expected
// outcome of each cell comes from tlsWant, the role table of issue 12 written
// down here from the specification (not read from grpcapi, so a wrong table
// there fails here), and the handshake rules of crypto/tls.

// noHandshake: the connection never carried the request (no HTTP status, no
// gRPC status from the server): a handshake the server refused, or a
// plaintext request on a TLS listener.
const noHandshake outcome = "handshake failure"

// tlsNoRevokeThrottle lets every caller of a matrix self-revoke an unknown
// key: the throttle of failed self-revokes per address would answer 429 to
// the later callers, all on 127.0.0.1.
const tlsNoRevokeThrottle = "TALOS_SERVE_SELF_SERVICE_REVOKE_THROTTLE_ENABLED=false"

const tlsWrongToken = "tls-wrong-token-long-enough-0123456789abcdef"

// tlsToken is the bearer token of a role, in the configurations that list
// role tokens.
func tlsToken(role string) string { return "tls-" + role + "-token-long-enough-0123456789abcdef" }

func spiffeID(ns, sa string) string { return "spiffe://talos.test/ns/" + ns + "/sa/" + sa }

// tlsIdentities is serve.admin.auth.identities of the certificate
// configurations: one URI SAN rule, one URI SAN glob, one subject rule and
// one DNS SAN rule.
var tlsIdentities = []map[string]string{
	{"uri_san": spiffeID("x", "admin"), "role": "admin"},
	{"subject": "CN=operator,O=Talos ops", "role": "operator"},
	{"dns_san": "verifier.talos.test", "role": "verifier"},
	{"uri_san": "spiffe://talos.test/ns/*/sa/sidecar", "role": "sidecar"},
}

func tlsIdentitiesJSON() string {
	b, _ := json.Marshal(tlsIdentities)
	return string(b)
}

// Roles of issue 12.
var tlsRoles = []string{"admin", "operator", "verifier", "sidecar"}

// methodClass is the row of the role table a method belongs to.
type methodClass int

const (
	classOperator  methodClass = iota // admin methods an operator reaches
	classAdminOnly                    // import and delete
	classVerifier                     // verify, batch verify, derive
	classSidecar                      // Verifier service and xDS
	classPublic                       // self-revoke, JWKS, health
)

func classOf(method string) methodClass {
	switch method {
	case pb.SelfService_RevokeApiKey_FullMethodName, pb.DerivedKeys_GetJwks_FullMethodName, healthpb.Health_Check_FullMethodName:
		return classPublic
	case sidecarpb.Verifier_Verify_FullMethodName, sidecarpb.Verifier_BatchVerify_FullMethodName, sidecarpb.Verifier_GetTokenPolicy_FullMethodName,
		discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName,
		discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName:
		return classSidecar
	case pb.ApiKeys_AdminImportApiKey_FullMethodName, pb.ApiKeys_AdminBatchCreateImportedApiKeys_FullMethodName, pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName:
		return classAdminOnly
	case pb.ApiKeys_AdminVerifyApiKey_FullMethodName, pb.ApiKeys_AdminBatchVerifyApiKeys_FullMethodName, pb.ApiKeys_AdminDeriveToken_FullMethodName:
		return classVerifier
	}
	return classOperator
}

// roleReaches is the role table: admin everything, operator the admin
// methods but import and delete, verifier verify/batch verify/derive,
// sidecar the sidecar protocol.
func roleReaches(role, method string) bool {
	switch c := classOf(method); role {
	case "admin":
		return true
	case "operator":
		return c == classOperator || c == classVerifier
	case "verifier":
		return c == classVerifier
	case "sidecar":
		return c == classSidecar
	}
	return false
}

// roleOutcome is what a caller holding roles (the union of its credentials')
// gets from method, on a control plane that enforces the admin API and the
// sidecar protocol (every configuration here does: each lists a credential
// reaching an admin method).
func roleOutcome(roles []string, method string) outcome {
	if classOf(method) == classPublic {
		return served
	}
	for _, r := range roles {
		if roleReaches(r, method) {
			return served
		}
	}
	if len(roles) > 0 {
		return denied
	}
	return unauthn
}

// tlsSurface is a matrix surface and the RPC it reaches, which decides its
// row of the role table.
type tlsSurface struct {
	matrixSurface
	method string
}

// Keys that do not exist: get, revoke and delete answer NOT_FOUND once the
// caller is let through, and change nothing.
const (
	tlsNoSuchIssued   = "00000000-0000-4000-8000-000000000000"
	tlsNoSuchImported = "0000000000000000000000000000000000000000000000000000000000000000"
)

// tlsSurfaces reuses the surfaces of the auth matrix that reach the control
// plane and adds every admin method the issue names, on both transports.
func tlsSurfaces(t *testing.T) []tlsSurface {
	t.Helper()
	reuse := map[string]string{
		"HTTP admin: list issued keys":             pb.ApiKeys_AdminListIssuedApiKeys_FullMethodName,
		"HTTP admin: verify":                       pb.ApiKeys_AdminVerifyApiKey_FullMethodName,
		"HTTP public: self-revoke":                 pb.SelfService_RevokeApiKey_FullMethodName,
		"HTTP public: JWKS":                        pb.DerivedKeys_GetJwks_FullMethodName,
		"HTTP public: /.well-known/jwks.json":      pb.DerivedKeys_GetJwks_FullMethodName,
		"HTTP health":                              healthpb.Health_Check_FullMethodName, // public, like gRPC health
		"gRPC admin: ApiKeys":                      pb.ApiKeys_AdminListIssuedApiKeys_FullMethodName,
		"gRPC public: SelfService":                 pb.SelfService_RevokeApiKey_FullMethodName,
		"gRPC public: DerivedKeys":                 pb.DerivedKeys_GetJwks_FullMethodName,
		"gRPC health":                              healthpb.Health_Check_FullMethodName,
		"sidecar protocol: Verifier":               sidecarpb.Verifier_Verify_FullMethodName,
		"sidecar protocol: Verifier token policy":  sidecarpb.Verifier_GetTokenPolicy_FullMethodName,
		"sidecar protocol: xDS delta":              discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName,
		"sidecar protocol: xDS state of the world": discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName,
	}
	var out []tlsSurface
	for _, s := range matrixSurfaces {
		if m, ok := reuse[s.name]; ok {
			out = append(out, tlsSurface{s, m})
			delete(reuse, s.name)
		}
	}
	if len(reuse) > 0 {
		t.Fatalf("auth matrix surfaces missing: %v", reuse)
	}
	api := func(e *matrixEnv) pb.ApiKeysClient { return pb.NewApiKeysClient(e.conn) }
	add := func(name, method string, probe func(context.Context, *matrixEnv, string) (outcome, error)) {
		out = append(out, tlsSurface{matrixSurface{name: name, kind: kindAdmin, probe: probe}, method})
	}
	add("HTTP admin: issue", pb.ApiKeys_AdminIssueApiKey_FullMethodName,
		httpProbe("POST", "srv.http", "/v2alpha1/admin/issuedApiKeys", `{"name":"tls-matrix","actor_id":"svc-tls"}`, http.StatusCreated))
	add("HTTP admin: get", pb.ApiKeys_AdminGetIssuedApiKey_FullMethodName,
		httpProbe("GET", "srv.http", "/v2alpha1/admin/issuedApiKeys/"+tlsNoSuchIssued, "", http.StatusNotFound))
	add("HTTP admin: revoke", pb.ApiKeys_AdminRevokeIssuedApiKey_FullMethodName,
		httpProbe("POST", "srv.http", "/v2alpha1/admin/issuedApiKeys/"+tlsNoSuchIssued+":revoke", `{"reason":"REVOCATION_REASON_KEY_COMPROMISE"}`, http.StatusNotFound))
	add("HTTP admin: import", pb.ApiKeys_AdminImportApiKey_FullMethodName, func(ctx context.Context, e *matrixEnv, authz string) (outcome, error) {
		return httpProbe("POST", "srv.http", "/v2alpha1/admin/importedApiKeys", `{"raw_key":"`+tlsRawKey()+`","name":"tls-matrix","actor_id":"svc-tls"}`, http.StatusCreated)(ctx, e, authz)
	})
	add("HTTP admin: delete imported", pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName,
		httpProbe("DELETE", "srv.http", "/v2alpha1/admin/importedApiKeys/"+tlsNoSuchImported, "", http.StatusNotFound))
	add("HTTP admin: batch verify", pb.ApiKeys_AdminBatchVerifyApiKeys_FullMethodName,
		httpProbe("POST", "srv.http", "/v2alpha1/admin/apiKeys:batchVerify", `{"requests":[{"credential":"SECRET"}]}`, http.StatusOK))
	add("HTTP admin: derive", pb.ApiKeys_AdminDeriveToken_FullMethodName,
		httpProbe("POST", "srv.http", "/v2alpha1/admin/apiKeys:derive", `{"credential":"SECRET","ttl":"5m"}`, http.StatusOK))
	add("gRPC admin: issue", pb.ApiKeys_AdminIssueApiKey_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminIssueApiKey(ctx, &pb.IssueApiKeyRequest{Name: "tls-matrix", ActorId: "svc-tls"})
		return err
	}, codes.OK))
	add("gRPC admin: get", pb.ApiKeys_AdminGetIssuedApiKey_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminGetIssuedApiKey(ctx, &pb.AdminGetIssuedApiKeyRequest{KeyId: tlsNoSuchIssued})
		return err
	}, codes.NotFound))
	add("gRPC admin: revoke", pb.ApiKeys_AdminRevokeIssuedApiKey_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminRevokeIssuedApiKey(ctx, &pb.AdminRevokeIssuedApiKeyRequest{KeyId: tlsNoSuchIssued, Reason: pb.RevocationReason_REVOCATION_REASON_KEY_COMPROMISE})
		return err
	}, codes.NotFound))
	add("gRPC admin: import", pb.ApiKeys_AdminImportApiKey_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminImportApiKey(ctx, &pb.ImportApiKeyRequest{RawKey: tlsRawKey(), Name: "tls-matrix", ActorId: "svc-tls"})
		return err
	}, codes.OK))
	add("gRPC admin: delete imported", pb.ApiKeys_AdminDeleteImportedApiKey_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminDeleteImportedApiKey(ctx, &pb.AdminDeleteImportedApiKeyRequest{KeyId: tlsNoSuchImported})
		return err
	}, codes.NotFound))
	add("gRPC admin: verify", pb.ApiKeys_AdminVerifyApiKey_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		r, err := api(e).AdminVerifyApiKey(ctx, &pb.VerifyApiKeyRequest{Credential: e.secret})
		if err == nil && !r.GetIsValid() {
			return fmt.Errorf("a valid key verified invalid: %v", r)
		}
		return err
	}, codes.OK))
	add("gRPC admin: batch verify", pb.ApiKeys_AdminBatchVerifyApiKeys_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminBatchVerifyApiKeys(ctx, &pb.BatchVerifyApiKeysRequest{Requests: []*pb.VerifyApiKeyRequest{{Credential: e.secret}}})
		return err
	}, codes.OK))
	add("gRPC admin: derive", pb.ApiKeys_AdminDeriveToken_FullMethodName, grpcProbe(func(ctx context.Context, e *matrixEnv) error {
		_, err := api(e).AdminDeriveToken(ctx, &pb.DeriveTokenRequest{Credential: e.secret, Ttl: "5m"})
		return err
	}, codes.OK))
	return out
}

// tlsRawKey is a fresh key to import, so every served import creates one.
func tlsRawKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "sk_tls_matrix_" + hex.EncodeToString(b)
}

// probeOutcome runs one probe and tells a refused handshake from an answer:
// an HTTP request that got no response at all (not a timeout), a gRPC call
// that found no transport (UNAVAILABLE: the server never sent a status), or
// the 400 net/http sends a plaintext request on a TLS listener without
// serving it.
func probeOutcome(ctx context.Context, s tlsSurface, e *matrixEnv, authz string) (outcome, error) {
	o, err := s.probe(ctx, e, authz)
	if err == nil {
		return o, nil
	}
	var ue *url.Error
	switch {
	case errors.As(err, &ue) && !ue.Timeout():
		return noHandshake, nil
	case status.Code(err) == codes.Unavailable:
		return noHandshake, nil
	case strings.Contains(err.Error(), "HTTP request to an HTTPS server"):
		return noHandshake, nil
	}
	return "", err
}

// tlsCert is a client certificate a caller presents, and what the
// certificate configurations make of it.
type tlsCert struct {
	leaf *tlstest.Leaf
	// trusted: issued by the client CA for client authentication, so a
	// server asking for a certificate verifies it.
	trusted bool
	role    string // the role the identity rules grant it; "" none
}

// tlsPKI is the CAs, files and certificates of one test.
type tlsPKI struct {
	ca, wrong               *tlstest.CA
	dir                     string
	caFile, wrongCAFile     string
	serverCert, serverKey   string
	sidecarCert, sidecarKey string
	certs                   map[string]tlsCert
}

func newTLSPKI(t *testing.T) *tlsPKI {
	t.Helper()
	p := &tlsPKI{ca: tlstest.NewCA(t, "talos test CA"), wrong: tlstest.NewCA(t, "wrong CA"), dir: t.TempDir()}
	p.caFile = p.ca.WriteCA(t, p.dir, "ca.crt")
	p.wrongCAFile = p.wrong.WriteCA(t, p.dir, "wrong-ca.crt")
	p.serverCert, p.serverKey = p.ca.Server(t).Write(t, p.dir, "server")
	client := func(ca *tlstest.CA, o tlstest.Options) *tlstest.Leaf {
		if !o.Server {
			o.Client = true
		}
		return ca.Issue(t, o)
	}
	ops := []string{"Talos ops"}
	p.certs = map[string]tlsCert{
		"admin":    {client(p.ca, tlstest.Options{CommonName: "admin", Organization: ops, URIs: []string{spiffeID("x", "admin")}}), true, "admin"},
		"operator": {client(p.ca, tlstest.Options{CommonName: "operator", Organization: ops, URIs: []string{spiffeID("x", "operator")}}), true, "operator"},
		"verifier": {client(p.ca, tlstest.Options{CommonName: "verifier", Organization: ops, DNS: []string{"verifier.talos.test"}, URIs: []string{spiffeID("x", "verifier")}}), true, "verifier"},
		"sidecar":  {client(p.ca, tlstest.Options{CommonName: "sidecar", Organization: ops, URIs: []string{spiffeID("edge", "sidecar")}}), true, "sidecar"},
		// Near misses of every rule: a path below the admin ID, a glob
		// segment that is two, a DNS name that only contains the rule's,
		// the operator's CN without its O.
		"no rule": {client(p.ca, tlstest.Options{CommonName: "operator", Organization: []string{"Other"},
			DNS:  []string{"verifier.talos.test.example", "x.verifier.talos.test"},
			URIs: []string{spiffeID("x", "admin") + "/extra", "spiffe://talos.test/ns/a/b/sa/sidecar", "spiffe://other.test/ns/x/sa/admin"}}), true, ""},
		// The admin identity, from a CA the server does not trust.
		"wrong CA": {client(p.wrong, tlstest.Options{CommonName: "admin", Organization: ops, URIs: []string{spiffeID("x", "admin")}}), false, "admin"},
		// The admin identity from the right CA, but for servers only.
		"server EKU": {p.ca.Issue(t, tlstest.Options{CommonName: "admin", Organization: ops, URIs: []string{spiffeID("x", "admin")}, Server: true}), false, "admin"},
	}
	p.sidecarCert, p.sidecarKey = p.certs["sidecar"].leaf.Write(t, p.dir, "sidecar")
	return p
}

// clientConfig trusts roots and presents cert (when not nil) whenever the
// server asks, whatever CAs it names: a caller that sends what it has.
func clientConfig(t *testing.T, cert *tlstest.Leaf, roots ...*tlstest.CA) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	for _, ca := range roots {
		pool.AddCert(ca.Cert)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc := cert.TLSCertificate(t)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return c
}

// tlsCaller is one caller of the TLS matrix.
type tlsCaller struct {
	name      string
	plaintext bool   // no TLS at all
	maxTLS12  bool   // offers TLS 1.2 only
	cert      string // key of tlsPKI.certs; "" none
	token     string // role whose token it sends, "wrong" for tlsWrongToken, "" none
}

var tlsCallers = []tlsCaller{
	{name: "plaintext with the admin token", plaintext: true, token: "admin"},
	{name: "no certificate, no token"},
	{name: "wrong-CA certificate (admin identity)", cert: "wrong CA"},
	{name: "server-only certificate (admin identity)", cert: "server EKU"},
	{name: "admin certificate", cert: "admin"},
	{name: "operator certificate", cert: "operator"},
	{name: "verifier certificate", cert: "verifier"},
	{name: "sidecar certificate", cert: "sidecar"},
	{name: "certificate matching no rule", cert: "no rule"},
	{name: "admin token", token: "admin"},
	{name: "operator token", token: "operator"},
	{name: "verifier token", token: "verifier"},
	{name: "sidecar token", token: "sidecar"},
	{name: "wrong token", token: "wrong"},
	{name: "verifier certificate + operator token", cert: "verifier", token: "operator"},
	{name: "sidecar certificate + wrong token", cert: "sidecar", token: "wrong"},
	{name: "certificate matching no rule + verifier token", cert: "no rule", token: "verifier"},
	{name: "TLS 1.2 only with the admin token", maxTLS12: true, token: "admin"},
}

func (k tlsCaller) authorization() string {
	switch k.token {
	case "":
		return ""
	case "wrong":
		return "Bearer " + tlsWrongToken
	}
	return "Bearer " + tlsToken(k.token)
}

// tlsMatrixConfig is one control plane (and its sidecar) of the TLS matrix.
type tlsMatrixConfig struct {
	name       string
	clientAuth string // none, request, require: on serve.http and serve.grpc
	minTLS13   bool
	identities bool // serve.admin.auth.identities is tlsIdentities
	tokens     bool // every role's token is listed
	// env adds the auth keys; proxyEnv is the sidecar's upstream
	// credentials; setup is the caller that issues the key.
	env      func(p *tlsPKI) []string
	proxyEnv func(p *tlsPKI) []string
	setup    tlsCaller
}

var tlsMatrixConfigs = []tlsMatrixConfig{
	{
		name: "mTLS require, certificate identities", clientAuth: "require", identities: true,
		env: func(*tlsPKI) []string { return []string{"TALOS_SERVE_ADMIN_AUTH_IDENTITIES=" + tlsIdentitiesJSON()} },
		proxyEnv: func(p *tlsPKI) []string {
			return []string{"TALOS_PROXY_UPSTREAM_TLS_CERT_FILE=" + p.sidecarCert, "TALOS_PROXY_UPSTREAM_TLS_KEY_FILE=" + p.sidecarKey}
		},
		setup: tlsCaller{name: "setup", cert: "admin"},
	},
	{
		name: "mTLS request, identities and role tokens", clientAuth: "request", identities: true, tokens: true,
		env: func(*tlsPKI) []string {
			var items []map[string]string
			for _, r := range tlsRoles {
				items = append(items, map[string]string{"token": tlsToken(r), "role": r})
			}
			b, _ := json.Marshal(items)
			return []string{"TALOS_SERVE_ADMIN_AUTH_IDENTITIES=" + tlsIdentitiesJSON(), "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=" + string(b)}
		},
		proxyEnv: func(p *tlsPKI) []string {
			return []string{"TALOS_PROXY_UPSTREAM_TLS_CERT_FILE=" + p.sidecarCert, "TALOS_PROXY_UPSTREAM_TLS_KEY_FILE=" + p.sidecarKey}
		},
		setup: tlsCaller{name: "setup", token: "admin"},
	},
	{
		// A bare string is an admin token; the sidecar's is a sidecar token.
		name: "server TLS 1.3, role tokens", clientAuth: "none", minTLS13: true, tokens: true,
		env: func(*tlsPKI) []string {
			b, _ := json.Marshal([]any{tlsToken("admin"),
				map[string]string{"token": tlsToken("operator"), "role": "operator"},
				map[string]string{"token": tlsToken("verifier"), "role": "verifier"}})
			return []string{"TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=" + string(b), "TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS=" + tlsToken("sidecar"),
				"TALOS_SERVE_HTTP_TLS_MIN_VERSION=1.3", "TALOS_SERVE_GRPC_TLS_MIN_VERSION=1.3"}
		},
		proxyEnv: func(*tlsPKI) []string { return []string{"TALOS_PROXY_UPSTREAM_TOKEN=" + tlsToken("sidecar")} },
		setup:    tlsCaller{name: "setup", token: "admin"},
	},
}

// want is the outcome of caller k on method: first the handshake (crypto/tls
// with the listener's client_auth and min_version), then the role table over
// the union of the roles k proves.
func (c tlsMatrixConfig) want(p *tlsPKI, k tlsCaller, method string) outcome {
	cert, hasCert := p.certs[k.cert]
	switch {
	case k.plaintext, k.maxTLS12 && c.minTLS13:
		return noHandshake
	case c.clientAuth == "require" && (!hasCert || !cert.trusted):
		return noHandshake
	case c.clientAuth == "request" && hasCert && !cert.trusted:
		return noHandshake // request verifies a certificate that is sent
	}
	var roles []string
	if c.clientAuth != "none" && c.identities && hasCert && cert.role != "" {
		roles = append(roles, cert.role)
	}
	if c.tokens && k.token != "" && k.token != "wrong" {
		roles = append(roles, k.token)
	}
	return roleOutcome(roles, method)
}

// serverTLSEnv is the environment of TLS on serve.http and serve.grpc with
// the PKI's server certificate.
func serverTLSEnv(p *tlsPKI, clientAuth string) []string {
	var env []string
	for _, l := range []string{"HTTP", "GRPC"} {
		pre := "TALOS_SERVE_" + l + "_TLS_"
		env = append(env, pre+"ENABLED=true", pre+"CERT_FILE="+p.serverCert, pre+"KEY_FILE="+p.serverKey, pre+"CLIENT_AUTH="+clientAuth)
		if clientAuth != "none" {
			env = append(env, pre+"CLIENT_CA_FILE="+p.caFile)
		}
	}
	return env
}

// startTLSServer is startServer with TLS on its HTTP listener: the returned
// server's http is an https:// base.
func startTLSServer(t *testing.T, env ...string) *testServer {
	t.Helper()
	srv := startServer(t, env...)
	srv.http = "https://" + strings.TrimPrefix(srv.http, "http://")
	return srv
}

// callerEnv is base as caller k reaches it: its HTTP client and gRPC
// connection carry k's TLS (or none), towards base's control plane.
func callerEnv(t *testing.T, p *tlsPKI, base *matrixEnv, k tlsCaller) *matrixEnv {
	t.Helper()
	e := *base
	srv := *base.srv
	e.srv = &srv
	var creds credentials.TransportCredentials
	if k.plaintext {
		srv.http = "http://" + strings.TrimPrefix(srv.http, "https://")
		creds = insecure.NewCredentials()
		e.client = &http.Client{Timeout: 10 * time.Second}
	} else {
		var leaf *tlstest.Leaf
		if k.cert != "" {
			leaf = p.certs[k.cert].leaf
		}
		cfg := clientConfig(t, leaf, p.ca)
		if k.maxTLS12 {
			cfg.MaxVersion = tls.VersionTLS12
		}
		// Each user gets its own copy: http.Transport adds its ALPN
		// protocols to the configuration it is given.
		creds = credentials.NewTLS(cfg.Clone())
		e.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true}}
	}
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.conn = conn
	return &e
}

// runMatrix probes every surface as every caller and checks the outcome
// want gives. It returns how many issue and import probes were served.
func runMatrix(t *testing.T, surfaces []tlsSurface, callers []string, env func(i int) *matrixEnv, authz func(i int) string, want func(i int, method string) outcome) (issues, imports int) {
	t.Helper()
	for i, name := range callers {
		e := env(i)
		for _, s := range surfaces {
			w := want(i, s.method)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			got, err := probeOutcome(ctx, s, e, authz(i))
			cancel()
			switch {
			case err != nil:
				t.Errorf("%s, %s: %v (want %s)", s.name, name, err, w)
			case got != w:
				t.Errorf("%s, %s: %s, want %s", s.name, name, got, w)
			}
			if got == served {
				switch s.method {
				case pb.ApiKeys_AdminIssueApiKey_FullMethodName:
					issues++
				case pb.ApiKeys_AdminImportApiKey_FullMethodName:
					imports++
				}
			}
		}
	}
	return issues, imports
}

// countKeys counts the issued and imported keys, over gRPC as e's caller.
func countKeys(t *testing.T, e *matrixEnv, authz string) (issued, imported int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if authz != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authz)
	}
	c := pb.NewApiKeysClient(e.conn)
	li, err := c.AdminListIssuedApiKeys(ctx, &pb.ListIssuedApiKeysRequest{PageSize: 1000})
	if err != nil {
		t.Fatalf("list issued: %v", err)
	}
	lm, err := c.AdminListImportedApiKeys(ctx, &pb.ListImportedApiKeysRequest{PageSize: 1000})
	if err != nil {
		t.Fatalf("list imported: %v", err)
	}
	if li.GetNextPageToken() != "" || lm.GetNextPageToken() != "" {
		t.Fatal("more than one page of keys")
	}
	return len(li.GetIssuedApiKeys()), len(lm.GetImportedApiKeys())
}

// TestE2E_TLSAuthMatrix: the auth matrix over TLS listeners, with mTLS
// identities, role tokens and both, for every caller, on every surface. A
// caller the handshake refuses is never served: its request errors without
// a status, and (counted over the whole configuration) no key exists that a
// served issue or import did not create.
func TestE2E_TLSAuthMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // with the other TLS tests: the rotation mostly waits out the check interval
	surfaces := tlsSurfaces(t)
	names := make([]string, len(tlsCallers))
	for i, k := range tlsCallers {
		names[i] = k.name
	}
	for _, cfg := range tlsMatrixConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			p := newTLSPKI(t)
			srv := startTLSServer(t, append(serverTLSEnv(p, cfg.clientAuth), append(cfg.env(p), tlsNoRevokeThrottle)...)...)
			base := &matrixEnv{srv: srv}

			// The key, issued by the setup caller over HTTPS.
			setup := callerEnv(t, p, base, cfg.setup)
			c := sdk(setup.srv.http)
			c.GetConfig().HTTPClient = setup.client
			if a := cfg.setup.authorization(); a != "" {
				c.GetConfig().AddDefaultHeader("Authorization", a)
			}
			base.secret, _ = issueKey(t, c, "read")

			// The sidecar reaches the control plane over TLS with its own
			// credential: it allows the key and its xDS stream is fresh.
			base.proxy = startProxy(t, srv.grpc, append([]string{"TALOS_PROXY_UPSTREAM_TLS_ENABLED=true", "TALOS_PROXY_UPSTREAM_TLS_CA_FILE=" + p.caFile}, cfg.proxyEnv(p)...)...)
			if r := base.proxy.check(t, base.secret); !allowed(r) {
				t.Errorf("the sidecar over TLS denied a valid key: %v", r)
			}
			base.proxy.waitFresh(t)

			issues, imports := runMatrix(t, surfaces, names,
				func(i int) *matrixEnv { return callerEnv(t, p, base, tlsCallers[i]) },
				func(i int) string { return tlsCallers[i].authorization() },
				func(i int, method string) outcome { return cfg.want(p, tlsCallers[i], method) })

			gotIssued, gotImported := countKeys(t, setup, cfg.setup.authorization())
			if gotIssued != issues+1 || gotImported != imports {
				t.Errorf("keys: %d issued, %d imported; the served probes made %d and %d: a refused call was served",
					gotIssued, gotImported, issues+1, imports)
			}
			if issues == 0 || imports == 0 {
				t.Errorf("no issue (%d) or import (%d) was served at all", issues, imports)
			}
			for _, tok := range []string{tlsWrongToken, tlsToken("admin"), tlsToken("operator"), tlsToken("verifier"), tlsToken("sidecar")} {
				if strings.Contains(srv.log.String(), tok) || strings.Contains(base.proxy.log.String(), tok) {
					t.Errorf("a token appears in a log")
				}
			}
		})
	}
}

// TestE2E_TLSSidecarWrongCAFailsClosed: a sidecar whose upstream_tls does not
// verify the control plane (a wrong CA, a wrong server name) or that the
// control plane refuses (no client certificate under require) denies a valid
// key with the in-band 503, never an allow; with the right CA and its sidecar
// certificate it allows the key, and the revocation reaches it pushed over
// the same TLS connection, well before its one-hour cache would let go.
func TestE2E_TLSSidecarWrongCAFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // with the other TLS tests: the rotation mostly waits out the check interval
	p := newTLSPKI(t)
	admin := tlsToken("admin")
	srv := startServer(t,
		"TALOS_SERVE_GRPC_TLS_ENABLED=true", "TALOS_SERVE_GRPC_TLS_CERT_FILE="+p.serverCert, "TALOS_SERVE_GRPC_TLS_KEY_FILE="+p.serverKey,
		"TALOS_SERVE_GRPC_TLS_CLIENT_AUTH=require", "TALOS_SERVE_GRPC_TLS_CLIENT_CA_FILE="+p.caFile,
		"TALOS_SERVE_ADMIN_AUTH_IDENTITIES="+`[{"uri_san":"spiffe://talos.test/ns/*/sa/sidecar","role":"sidecar"}]`,
		"TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS="+admin) // a plain list: admin tokens
	c := sdk(srv.http)
	c.GetConfig().AddDefaultHeader("Authorization", "Bearer "+admin)
	secret, id := issueKey(t, c, "read")

	tlsEnv := func(ca string, extra ...string) []string {
		return append([]string{"TALOS_PROXY_CACHE_TTL=1h", "TALOS_PROXY_UPSTREAM_TLS_ENABLED=true", "TALOS_PROXY_UPSTREAM_TLS_CA_FILE=" + ca}, extra...)
	}
	withCert := []string{"TALOS_PROXY_UPSTREAM_TLS_CERT_FILE=" + p.sidecarCert, "TALOS_PROXY_UPSTREAM_TLS_KEY_FILE=" + p.sidecarKey}
	for _, bad := range []struct {
		name string
		env  []string
	}{
		{"wrong CA", tlsEnv(p.wrongCAFile, withCert...)},
		{"wrong server name", tlsEnv(p.caFile, append(withCert, "TALOS_PROXY_UPSTREAM_TLS_SERVER_NAME=control-plane.other.test")...)},
		{"no client certificate", tlsEnv(p.caFile)},
	} {
		sc := startProxy(t, srv.grpc, bad.env...)
		for range 3 {
			if r := sc.check(t, secret); !deniedWith(r, http.StatusServiceUnavailable) {
				t.Errorf("sidecar with %s: a valid key got %v, want the 503 deny", bad.name, r)
			}
		}
		if sc.streamFresh(t) {
			t.Errorf("sidecar with %s: its invalidation stream is fresh", bad.name)
		}
	}

	good := startProxy(t, srv.grpc, tlsEnv(p.caFile, withCert...)...)
	if r := good.check(t, secret); !allowed(r) {
		t.Fatalf("sidecar with the right CA and certificate: %v", r)
	}
	good.waitFresh(t)
	if r := good.check(t, secret); !allowed(r) { // now from its cache
		t.Fatalf("second check: %v", r)
	}
	calls := metric(t, good.metrics, "talos_proxy_upstream_calls_total")
	revokeKey(t, c, id)
	revoked := time.Now()
	eventually(t, "revocation pushed over mTLS", 5*time.Second, func() bool { return deniedWith(good.check(t, secret), http.StatusUnauthorized) })
	t.Logf("revoked key denied %v after the revoke (cache TTL 1h)", time.Since(revoked).Round(time.Millisecond))
	if got := metric(t, good.metrics, "talos_proxy_upstream_calls_total"); got < calls {
		t.Errorf("upstream calls went down: %v then %v", calls, got)
	}
}

// TestE2E_TLSRotationUnderLoad rotates the control plane's certificate in a
// Kubernetes-style secret volume, first to a new leaf of the same CA, then to
// a leaf of a new CA (the clients trust both), while clients verify a key
// over HTTPS and gRPC, on long-lived and on fresh connections: no request
// fails, and new handshakes come to present each new certificate. The files
// are checked at most every 10 s (tlsconf.DefaultCheckInterval; no
// configuration key sets it), so this test takes about 20 s.
func TestE2E_TLSRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // with the other TLS tests: the rotation mostly waits out the check interval
	ca1, ca2 := tlstest.NewCA(t, "rotation CA 1"), tlstest.NewCA(t, "rotation CA 2")
	leaves := []*tlstest.Leaf{ca1.Server(t), ca1.Server(t), ca2.Server(t)}
	cas := []*tlstest.CA{ca1, ca1, ca2}
	vol := filepath.Join(t.TempDir(), "tls")
	if err := os.Mkdir(vol, 0o700); err != nil {
		t.Fatal(err)
	}
	files := tlstest.WriteSecretVolume(t, vol, leaves[0].SecretFiles(ca1))
	verifierTok, admin := tlsToken("verifier"), tlsToken("admin")
	tokens, _ := json.Marshal([]map[string]string{{"token": admin, "role": "admin"}, {"token": verifierTok, "role": "verifier"}})
	var env []string
	for _, l := range []string{"HTTP", "GRPC"} {
		pre := "TALOS_SERVE_" + l + "_TLS_"
		env = append(env, pre+"ENABLED=true", pre+"CERT_FILE="+files["tls.crt"], pre+"KEY_FILE="+files["tls.key"])
	}
	srv := startTLSServer(t, append(env, "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS="+string(tokens))...)
	cfg := clientConfig(t, nil, ca1, ca2)
	c := sdk(srv.http)
	c.GetConfig().HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.Clone()}}
	c.GetConfig().AddDefaultHeader("Authorization", "Bearer "+admin)
	secret, _ := issueKey(t, c, "read")

	load := startRotationLoad(t, srv, cfg, secret, verifierTok)

	for gen := 1; gen < len(leaves); gen++ {
		start := time.Now()
		tlstest.WriteSecretVolume(t, vol, leaves[gen].SecretFiles(cas[gen]))
		want := leaves[gen].Cert.SerialNumber
		eventually(t, fmt.Sprintf("new handshakes present certificate %d", gen+1), 25*time.Second, func() bool {
			h, g := presentedSerial(srv.http[len("https://"):], cfg, "http/1.1"), presentedSerial(srv.grpc, cfg, "h2")
			return h != nil && g != nil && h.Cmp(want) == 0 && g.Cmp(want) == 0
		})
		t.Logf("certificate %d served on new handshakes %v after the files changed", gen+1, time.Since(start).Round(time.Millisecond))
		// The fresh-connection clients come to see it too.
		eventually(t, fmt.Sprintf("the load's fresh connections see certificate %d", gen+1), 10*time.Second, func() bool { return load.sawSerial(want) })
	}
	load.stop(t)
}

// presentedSerial is the serial of the certificate a new handshake with addr
// gets; nil when the handshake fails.
func presentedSerial(addr string, cfg *tls.Config, proto string) *big.Int {
	c := cfg.Clone()
	c.NextProtos = []string{proto}
	c.ClientSessionCache = nil
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// rotationLoad verifies a key in a loop from several clients until stopped,
// counting failures.
type rotationLoad struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	ok      map[string]int
	fails   []string
	serials map[string]map[string]bool // transport → serials seen by fresh connections
}

func startRotationLoad(t *testing.T, srv *testServer, cfg *tls.Config, secret, token string) *rotationLoad {
	t.Helper()
	l := &rotationLoad{done: make(chan struct{}), ok: map[string]int{}, serials: map[string]map[string]bool{"http": {}, "grpc": {}}}
	body := `{"credential":"` + secret + `"}`
	httpVerify := func(c *http.Client) (*x509.Certificate, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.http+"/v2alpha1/admin/apiKeys:verify", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var v struct {
			IsValid bool `json:"is_valid"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK || !v.IsValid {
			return nil, fmt.Errorf("HTTP %d, is_valid %v, %v", resp.StatusCode, v.IsValid, err)
		}
		return resp.TLS.PeerCertificates[0], nil
	}
	grpcVerify := func(conn *grpc.ClientConn) (*x509.Certificate, error) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token), 10*time.Second)
		defer cancel()
		var p peer.Peer
		r, err := pb.NewApiKeysClient(conn).AdminVerifyApiKey(ctx, &pb.VerifyApiKeyRequest{Credential: secret}, grpc.Peer(&p))
		if err != nil {
			return nil, err
		}
		if !r.GetIsValid() {
			return nil, fmt.Errorf("is_valid false: %v", r)
		}
		ti, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(ti.State.PeerCertificates) == 0 {
			return nil, fmt.Errorf("no TLS peer: %T", p.AuthInfo)
		}
		return ti.State.PeerCertificates[0], nil
	}
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(credentials.NewTLS(cfg.Clone())))
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	// A copy of cfg each: http.Transport adds its ALPN protocols to the
	// configuration it is given.
	keepAlive := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true}}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.Clone(), DisableKeepAlives: true}}
	shared := dial()
	t.Cleanup(func() { shared.Close() })
	workers := map[string]func() (string, *x509.Certificate, error){
		"HTTPS keep-alive": func() (string, *x509.Certificate, error) { c, err := httpVerify(keepAlive); return "", c, err },
		"HTTPS fresh 1":    func() (string, *x509.Certificate, error) { c, err := httpVerify(fresh); return "http", c, err },
		"HTTPS fresh 2":    func() (string, *x509.Certificate, error) { c, err := httpVerify(fresh); return "http", c, err },
		"gRPC shared":      func() (string, *x509.Certificate, error) { c, err := grpcVerify(shared); return "", c, err },
		"gRPC fresh": func() (string, *x509.Certificate, error) {
			conn := dial()
			defer conn.Close()
			c, err := grpcVerify(conn)
			return "grpc", c, err
		},
	}
	for name, w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(10 * time.Millisecond) // a steady load, not a CPU burner
			defer tick.Stop()
			for {
				select {
				case <-l.done:
					return
				case <-tick.C:
				}
				transport, cert, err := w()
				l.mu.Lock()
				if err != nil {
					l.fails = append(l.fails, name+": "+err.Error())
				} else {
					l.ok[name]++
					if transport != "" {
						l.serials[transport][cert.SerialNumber.String()] = true
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// sawSerial reports whether fresh connections over both transports have
// been served the certificate with serial n.
func (l *rotationLoad) sawSerial(n *big.Int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.serials["http"][n.String()] && l.serials["grpc"][n.String()]
}

func (l *rotationLoad) stop(t *testing.T) {
	t.Helper()
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("verified under rotation: %v", l.ok)
	if len(l.fails) > 0 {
		t.Errorf("%d requests failed under rotation; first: %v", len(l.fails), l.fails[:min(5, len(l.fails))])
	}
	for _, name := range []string{"HTTPS keep-alive", "HTTPS fresh 1", "HTTPS fresh 2", "gRPC shared", "gRPC fresh"} {
		if l.ok[name] == 0 {
			t.Errorf("%s: no request succeeded", name)
		}
	}
}

// headerTransport adds a header's values to every request.
type headerTransport struct {
	name   string
	values []string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for _, v := range h.values {
		r.Header.Add(h.name, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// xfccCaller sends x-forwarded-client-cert values (and maybe a token) over
// plaintext; grants is the role the identity rules give the identity of the
// header's last element, when the header is trusted.
type xfccCaller struct {
	name   string
	xfcc   []string
	token  string // a role: its token from tlsToken; only admin is configured
	grants string
}

var xfccCallers = []xfccCaller{
	{name: "no header"},
	{name: "admin URI", xfcc: []string{"URI=" + spiffeID("x", "admin")}, grants: "admin"},
	{name: "Envoy's full element, verifier DNS SAN", grants: "verifier", xfcc: []string{
		`By=spiffe://talos.test/ns/mesh/sa/envoy;Hash=1f2e3d;Subject="CN=x,O=Other";URI=` + spiffeID("x", "nobody") + `;DNS=verifier.talos.test`}},
	{name: "operator subject", xfcc: []string{`Subject="CN=operator,O=Talos ops";URI=` + spiffeID("x", "nobody")}, grants: "operator"},
	{name: "sidecar URI, after an earlier hop", xfcc: []string{"URI=" + spiffeID("x", "nobody") + ",URI=" + spiffeID("edge", "sidecar")}, grants: "sidecar"},
	// Forgeries: the admin ID where it is not the forwarded client's.
	{name: "forged: admin ID in By", xfcc: []string{"By=" + spiffeID("x", "admin") + ";URI=" + spiffeID("x", "nobody")}},
	{name: "forged: admin ID inside a quoted Subject", xfcc: []string{`Subject="CN=x,URI=` + spiffeID("x", "admin") + `";URI=` + spiffeID("x", "nobody")}},
	{name: "forged: admin pair inside a quoted Hash", xfcc: []string{`Hash="00;URI=` + spiffeID("x", "admin") + `"`}},
	{name: "forged: admin ID in an earlier element", xfcc: []string{"URI=" + spiffeID("x", "admin") + ",URI=" + spiffeID("x", "nobody")}},
	{name: "forged: admin ID in an earlier header line", xfcc: []string{"URI=" + spiffeID("x", "admin"), "URI=" + spiffeID("x", "nobody")}},
	{name: "forged: admin ID in a malformed header", xfcc: []string{"URI=" + spiffeID("x", "admin") + ";Role=admin"}},
	{name: "forged: admin ID after a bad escape", xfcc: []string{`Subject="CN=x\";URI=` + spiffeID("x", "admin")}},
	{name: "admin token", token: "admin"},
	{name: "verifier URI + admin token", xfcc: []string{"URI=" + spiffeID("x", "verifier") + ";DNS=verifier.talos.test"}, token: "admin", grants: "verifier"},
}

// TestE2E_XFCC: trusted from 127.0.0.1/32, the identity Envoy forwards in
// x-forwarded-client-cert (its last element) gets its role over plaintext
// HTTP and gRPC; trusted only from 10.0.0.0/8, the same header from the
// test's 127.0.0.1 is ignored (401); a role's ID anywhere but the last
// element's own URI, DNS or Subject fields grants nothing.
func TestE2E_XFCC(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // with the other TLS tests: the rotation mostly waits out the check interval
	surfaces := tlsSurfaces(t)
	names := make([]string, len(xfccCallers))
	for i, k := range xfccCallers {
		names[i] = k.name
	}
	for _, cfg := range []struct {
		from    string
		trusted bool // the test's peer address is in from
	}{{"127.0.0.1/32", true}, {"10.0.0.0/8", false}} {
		t.Run("trusted from "+cfg.from, func(t *testing.T) {
			srv := startServer(t, tlsNoRevokeThrottle, "TALOS_SERVE_ADMIN_AUTH_IDENTITIES="+tlsIdentitiesJSON(),
				"TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS="+tlsToken("admin"),
				"TALOS_SERVE_ADMIN_AUTH_TRUST_XFCC=true", "TALOS_SERVE_ADMIN_AUTH_XFCC_ALLOW_FROM="+cfg.from)
			conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := sdk(srv.http)
			c.GetConfig().AddDefaultHeader("Authorization", "Bearer "+tlsToken("admin"))
			// No sidecar: none of these surfaces is one of its listeners.
			base := &matrixEnv{srv: srv, conn: conn, proxy: &testProxy{}}
			base.secret, _ = issueKey(t, c, "read")
			auth := func(i int) string {
				if k := xfccCallers[i]; k.token != "" {
					return "Bearer " + tlsToken(k.token)
				}
				return ""
			}
			// The header travels in the caller's HTTP client and in the
			// gRPC metadata of every call on its connection.
			env := func(i int) *matrixEnv {
				e := *base
				k := xfccCallers[i]
				e.client = &http.Client{Timeout: 10 * time.Second, Transport: headerTransport{"x-forwarded-client-cert", k.xfcc}}
				var opts []grpc.DialOption
				opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
						return invoker(withXFCC(ctx, k.xfcc), method, req, reply, cc, o...)
					}),
					grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
						return streamer(withXFCC(ctx, k.xfcc), desc, cc, method, o...)
					}))
				kc, err := grpc.NewClient(srv.grpc, opts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { kc.Close() })
				e.conn = kc
				return &e
			}
			want := func(i int, method string) outcome {
				k := xfccCallers[i]
				var roles []string
				if cfg.trusted && k.grants != "" {
					roles = append(roles, k.grants)
				}
				if k.token == "admin" {
					roles = append(roles, "admin")
				}
				return roleOutcome(roles, method)
			}
			runMatrix(t, surfaces, names, env, auth, want)
			if strings.Contains(srv.log.String(), tlsToken("admin")) {
				t.Error("the token appears in the log")
			}
		})
	}
}

func withXFCC(ctx context.Context, values []string) context.Context {
	for _, v := range values {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-forwarded-client-cert", v)
	}
	return ctx
}
