package config_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/credential"
)

func TestValidate_TLSAndRoles(t *testing.T) {
	t.Parallel()
	on := config.TLS{Enabled: true, CertFile: "/c.crt", KeyFile: "/c.key", ClientAuth: config.ClientAuthNone}
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		wantErr string
	}{
		{"server TLS", func(c *config.Config) { c.Serve.HTTP.TLS = on }, ""},
		{"mTLS", func(c *config.Config) {
			c.Serve.GRPC.TLS = on
			c.Serve.GRPC.TLS.ClientAuth, c.Serve.GRPC.TLS.ClientCAFile = config.ClientAuthRequire, "/ca.crt"
		}, ""},
		{"files without enabled is never plaintext", func(c *config.Config) {
			c.Serve.HTTP.TLS = on
			c.Serve.HTTP.TLS.Enabled = false
		}, "serve.http.tls.enabled: must be true"},
		{"client auth without enabled", func(c *config.Config) { c.Serve.Metrics.TLS.ClientAuth = config.ClientAuthRequire },
			"serve.metrics.tls.enabled: must be true"},
		{"no key", func(c *config.Config) { c.Serve.GRPC.TLS = config.TLS{Enabled: true, CertFile: "/c.crt"} },
			"serve.grpc.tls.key_file: must be set"},
		{"no cert", func(c *config.Config) { c.Serve.GRPC.TLS = config.TLS{Enabled: true, KeyFile: "/c.key"} },
			"serve.grpc.tls.cert_file: must be set"},
		{"require without a CA", func(c *config.Config) {
			c.Serve.HTTP.TLS = on
			c.Serve.HTTP.TLS.ClientAuth = config.ClientAuthRequire
		}, "serve.http.tls.client_ca_file: must be set when serve.http.tls.client_auth is require"},
		{"CA but no client auth", func(c *config.Config) {
			c.Serve.HTTP.TLS = on
			c.Serve.HTTP.TLS.ClientCAFile = "/ca.crt"
		}, "serve.http.tls.client_auth: must be request or require"},
		{"unknown client auth", func(c *config.Config) {
			c.Serve.HTTP.TLS = on
			c.Serve.HTTP.TLS.ClientAuth = "optional"
		}, `serve.http.tls.client_auth: must be none, request or require (got "optional")`},
		{"bad min version", func(c *config.Config) {
			c.Serve.HTTP.TLS = on
			c.Serve.HTTP.TLS.MinVersion = "1.0"
		}, "serve.http.tls.min_version: must be 1.2 or 1.3"},
		{"redis CA without enabled", func(c *config.Config) { c.Cache.Redis.TLS.CAFile = "/ca.crt" }, "cache.redis.tls.enabled: must be true"},
		{"redis half a client cert", func(c *config.Config) {
			c.Cache.Redis.TLS = config.ClientTLS{Enabled: true, CertFile: "/c.crt"}
		}, "cache.redis.tls: cert_file and key_file must be set together"},
		{"token roles", func(c *config.Config) {
			c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret(testSecret)}, {Token: config.NewSecret(testSecret2), Role: "verifier"}}
		}, ""},
		{"unknown token role", func(c *config.Config) {
			c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret(testSecret), Role: "root"}}
		}, `serve.admin.auth.bearer_tokens[0].role: unknown role "root"`},
		{"one token, two roles", func(c *config.Config) {
			c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: config.NewSecret(testSecret)}, {Token: config.NewSecret(testSecret), Role: "sidecar"}}
		}, "serve.admin.auth.bearer_tokens[1]: must not repeat serve.admin.auth.bearer_tokens[0]"},
		{"identity", func(c *config.Config) {
			c.Serve.GRPC.TLS = config.TLS{Enabled: true, CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca", ClientAuth: config.ClientAuthRequest}
			c.Serve.Admin.Auth.Identities = []config.Identity{{URISAN: "spiffe://t/ns/*/sa/sidecar", Role: "sidecar"}}
		}, ""},
		{"identity with two patterns", func(c *config.Config) {
			c.Serve.Admin.Auth.Identities = []config.Identity{{URISAN: "spiffe://t/a", DNSSAN: "a.t", Role: "admin"}}
		}, "serve.admin.auth.identities[0]: must set exactly one of uri_san, dns_san and subject (got 2)"},
		{"identity without pattern", func(c *config.Config) {
			c.Serve.Admin.Auth.Identities = []config.Identity{{Role: "admin"}}
		}, "serve.admin.auth.identities[0]: must set exactly one"},
		{"identity without role", func(c *config.Config) {
			c.Serve.Admin.Auth.Identities = []config.Identity{{Subject: "CN=ops"}}
		}, "serve.admin.auth.identities[0].role: must be set"},
		{"identity bad glob", func(c *config.Config) {
			c.Serve.Admin.Auth.Identities = []config.Identity{{DNSSAN: "[a", Role: "admin"}}
		}, "serve.admin.auth.identities[0].dns_san: invalid pattern"},
		{"xfcc without peers", func(c *config.Config) { c.Serve.Admin.Auth.TrustXFCC = true },
			"serve.admin.auth.xfcc_allow_from: must list the mesh proxies' addresses"},
		{"xfcc peers without trust", func(c *config.Config) { c.Serve.Admin.Auth.XFCCAllowFrom = []string{"127.0.0.1"} },
			"serve.admin.auth.trust_xfcc: must be true"},
		{"xfcc from anyone", func(c *config.Config) {
			c.Serve.Admin.Auth.TrustXFCC, c.Serve.Admin.Auth.XFCCAllowFrom = true, []string{"::/0"}
		}, "serve.admin.auth.xfcc_allow_from[0]: must not be ::/0"},
		{"xfcc bad prefix", func(c *config.Config) {
			c.Serve.Admin.Auth.TrustXFCC, c.Serve.Admin.Auth.XFCCAllowFrom = true, []string{"10.0.0.0/33"}
		}, "serve.admin.auth.xfcc_allow_from[0]: must be an address or a CIDR prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withRequired()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), testSecret2)) {
				t.Errorf("error quotes a token: %v", err)
			}
		})
	}
}

func TestValidateProxy_TLS(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		mutate  func(*config.Proxy)
		wantErr string
	}{
		{"upstream mTLS", func(p *config.Proxy) {
			p.UpstreamTLS = config.ClientTLS{Enabled: true, CAFile: "/ca", CertFile: "/c", KeyFile: "/k", ServerName: "talos"}
		}, ""},
		{"upstream CA without enabled", func(p *config.Proxy) { p.UpstreamTLS.CAFile = "/ca" }, "proxy.upstream_tls.enabled: must be true"},
		{"upstream server name without enabled", func(p *config.Proxy) { p.UpstreamTLS.ServerName = "talos" }, "proxy.upstream_tls.enabled: must be true"},
		{"ext_authz files without enabled", func(p *config.Proxy) { p.ExtAuthz.TLS.CertFile = "/c" }, "proxy.extauthz.tls.enabled: must be true"},
		{"http require without CA", func(p *config.Proxy) {
			p.HTTP.TLS = config.TLS{Enabled: true, CertFile: "/c", KeyFile: "/k", ClientAuth: config.ClientAuthRequire}
		}, "proxy.http.tls.client_ca_file: must be set"},
		{"metrics no key", func(p *config.Proxy) { p.Metrics.TLS = config.TLS{Enabled: true, CertFile: "/c"} }, "proxy.metrics.tls.key_file: must be set"},
		{"redis CA without enabled", func(p *config.Proxy) { p.Cache.Redis.TLS.CAFile = "/ca" }, "proxy.cache.redis.tls.enabled: must be true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Defaults()
			tt.mutate(&c.Proxy)
			err := c.ValidateProxy()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateProxy() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateProxy() = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestLoad_RolesAndTLS loads roles, identities and TLS from a file and from
// the environment, in every shape the docs give.
func TestLoad_RolesAndTLS(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "talos.yaml", `
serve:
  grpc:
    tls: {enabled: true, cert_file: /tls/tls.crt, key_file: /tls/tls.key, client_ca_file: /tls/ca.crt, client_auth: require, min_version: "1.3"}
  admin:
    auth:
      bearer_tokens:
        - `+testSecret+`
        - {token: `+testSecret2+`, role: verifier}
      identities:
        - {uri_san: "spiffe://cluster.local/ns/talos/sa/*", role: sidecar}
        - {subject: "CN=ops,O=Example", role: operator}
      trust_xfcc: true
      xfcc_allow_from: [127.0.0.1, "10.1.2.3/8", "::1/128"]
`)
	got := mustLoad(t, []string{file}, requiredEnv)
	a := got.Serve.Admin.Auth
	wantTokens := []config.RoleToken{{Token: testSecret, Role: credential.RoleAdmin}, {Token: testSecret2, Role: credential.RoleVerifier}}
	if diff := cmp.Diff(wantTokens, a.RoleTokens()); diff != "" {
		t.Errorf("RoleTokens (-want +got):\n%s", diff)
	}
	if r := a.Identities[0].IdentityRole(); r != credential.RoleSidecar || a.Identities[0].URISAN != "spiffe://cluster.local/ns/talos/sa/*" {
		t.Errorf("identity 0 = %+v (%v)", a.Identities[0], r)
	}
	if r := a.Identities[1].IdentityRole(); r != credential.RoleOperator {
		t.Errorf("identity 1 role = %v", r)
	}
	wantPeers := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if diff := cmp.Diff(wantPeers, a.XFCCFrom, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("XFCCFrom (-want +got):\n%s", diff)
	}
	if g := got.Serve.GRPC.TLS; !g.Enabled || g.ClientAuth != config.ClientAuthRequire || g.MinVersion != config.TLSVersion13 || g.ClientCAFile != "/tls/ca.crt" {
		t.Errorf("serve.grpc.tls = %+v", g)
	}

	env := append([]string{
		`TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=[{"token":"` + testSecret + `","role":"sidecar"}]`,
		`TALOS_SERVE_ADMIN_AUTH_IDENTITIES=[{"dns_san":"*.sidecars.example","role":"sidecar"}]`,
		"TALOS_SERVE_HTTP_TLS_ENABLED=true", "TALOS_SERVE_HTTP_TLS_CERT_FILE=/a.crt", "TALOS_SERVE_HTTP_TLS_KEY_FILE=/a.key",
		"TALOS_SERVE_HTTP_TLS_CLIENT_AUTH=request", "TALOS_SERVE_HTTP_TLS_CLIENT_CA_FILE=/ca.crt",
	}, requiredEnv...)
	got = mustLoad(t, nil, env)
	if diff := cmp.Diff([]config.RoleToken{{Token: testSecret, Role: credential.RoleSidecar}}, got.Serve.Admin.Auth.RoleTokens()); diff != "" {
		t.Errorf("env RoleTokens (-want +got):\n%s", diff)
	}
	if ids := got.Serve.Admin.Auth.Identities; len(ids) != 1 || ids[0].DNSSAN != "*.sidecars.example" {
		t.Errorf("env identities = %+v", ids)
	}
	if h := got.Serve.HTTP.TLS; !h.Enabled || h.ClientAuth != config.ClientAuthRequest || h.CertFile != "/a.crt" {
		t.Errorf("env serve.http.tls = %+v", h)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("warnings = %q", got.Warnings)
	}

	// An identity no listener can check is a warning, not silence.
	got = mustLoad(t, nil, append([]string{`TALOS_SERVE_ADMIN_AUTH_IDENTITIES=[{"uri_san":"spiffe://x/y","role":"admin"}]`}, requiredEnv...))
	if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], "no identity can match") {
		t.Errorf("warnings = %q, want the unmatched-identities one", got.Warnings)
	}

	// Schema: an unknown role, and an object item without a token.
	for _, bad := range []string{
		"serve: {admin: {auth: {bearer_tokens: [{token: " + testSecret + ", role: root}]}}}",
		"serve: {admin: {auth: {bearer_tokens: [{role: admin}]}}}",
		"serve: {http: {tls: {enabled: true, client_auth: maybe}}}",
	} {
		if _, err := config.Load([]string{writeFile(t, "bad.yaml", bad)}, requiredEnv); err == nil {
			t.Errorf("Load(%s) = nil error", bad)
		} else if strings.Contains(err.Error(), testSecret) {
			t.Errorf("schema error quotes a token: %v", err)
		}
	}
}
