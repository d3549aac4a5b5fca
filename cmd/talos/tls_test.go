package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// TestServe_TLSStartErrors: a TLS configuration that cannot work stops the
// start with an error naming the key, before anything listens.
func TestServe_TLSStartErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "talos-test")
	cert, key := ca.Server(t).Write(t, dir, "server")
	missing := dir + "/missing.crt"
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"missing certificate", []string{"serve"},
			[]string{"TALOS_SERVE_HTTP_TLS_ENABLED=true", "TALOS_SERVE_HTTP_TLS_CERT_FILE=" + missing, "TALOS_SERVE_HTTP_TLS_KEY_FILE=" + key},
			"serve.http.tls"},
		{"missing client CA", []string{"serve"},
			[]string{"TALOS_SERVE_GRPC_TLS_ENABLED=true", "TALOS_SERVE_GRPC_TLS_CERT_FILE=" + cert, "TALOS_SERVE_GRPC_TLS_KEY_FILE=" + key,
				"TALOS_SERVE_GRPC_TLS_CLIENT_AUTH=require", "TALOS_SERVE_GRPC_TLS_CLIENT_CA_FILE=" + missing},
			"serve.grpc.tls"},
		{"key and certificate swapped", []string{"serve"},
			[]string{"TALOS_SERVE_METRICS_TLS_ENABLED=true", "TALOS_SERVE_METRICS_TLS_CERT_FILE=" + key, "TALOS_SERVE_METRICS_TLS_KEY_FILE=" + cert},
			"serve.metrics.tls"},
		{"embedded sidecar without upstream TLS", []string{"serve", "--with-proxy"},
			[]string{"TALOS_SERVE_GRPC_TLS_ENABLED=true", "TALOS_SERVE_GRPC_TLS_CERT_FILE=" + cert, "TALOS_SERVE_GRPC_TLS_KEY_FILE=" + key,
				"TALOS_PROXY_EXTAUTHZ_PORT=0", "TALOS_PROXY_HTTP_PORT=0", "TALOS_PROXY_METRICS_PORT=0"},
			"proxy.upstream_tls"},
		{"sidecar with a missing CA", []string{"proxy"},
			[]string{"TALOS_PROXY_UPSTREAM_TLS_ENABLED=true", "TALOS_PROXY_UPSTREAM_TLS_CA_FILE=" + missing},
			"proxy.upstream_tls"},
		{"sidecar listener without its key", []string{"proxy"},
			[]string{"TALOS_PROXY_EXTAUTHZ_TLS_ENABLED=true", "TALOS_PROXY_EXTAUTHZ_TLS_CERT_FILE=" + cert},
			"proxy.extauthz.tls.key_file"},
		{"redis with a wrong CA file", []string{"proxy"},
			[]string{"TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_SECRET=redis-secret-long-enough-0123456789abc",
				"TALOS_PROXY_CACHE_REDIS_TLS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_TLS_CA_FILE=" + key},
			"proxy.cache.redis.tls"},
		{"sidecar checks under its own API paths", []string{"proxy"}, []string{"TALOS_PROXY_HTTP_PATH_PREFIX=/v2alpha1"},
			"proxy.http_path_prefix"},
		{"files without enabled", []string{"serve"}, []string{"TALOS_SERVE_HTTP_TLS_CERT_FILE=" + cert},
			"serve.http.tls.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := append(serverEnv(t.TempDir(), "0"), tc.env...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, tc.args, env, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%v) = %v, want an error naming %s", tc.args, err, tc.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error quotes a PEM file: %v", err)
			}
		})
	}
}

// TestServe_WithProxyOverMTLS: serve --with-proxy with the gRPC listener
// requiring client certificates: the embedded sidecar reaches its control
// plane over mTLS as a certificate identity with the sidecar role, and no
// token at all.
func TestServe_WithProxyOverMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "talos-test")
	cert, key := ca.Server(t).Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca")
	sideCert, sideKey := ca.Client(t, "sidecar", "spiffe://talos.test/ns/edge/sa/sidecar").Write(t, dir, "sidecar")
	const admin = "embedded-admin-token-long-enough-0123456789"
	env := append(serverEnv(dir, "0"),
		"TALOS_SERVE_GRPC_TLS_ENABLED=true", "TALOS_SERVE_GRPC_TLS_CERT_FILE="+cert, "TALOS_SERVE_GRPC_TLS_KEY_FILE="+key,
		"TALOS_SERVE_GRPC_TLS_CLIENT_AUTH=require", "TALOS_SERVE_GRPC_TLS_CLIENT_CA_FILE="+caFile,
		`TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=[{"token":"`+admin+`","role":"operator"}]`,
		`TALOS_SERVE_ADMIN_AUTH_IDENTITIES=[{"uri_san":"spiffe://talos.test/ns/*/sa/sidecar","role":"sidecar"}]`,
		"TALOS_PROXY_UPSTREAM_TLS_ENABLED=true", "TALOS_PROXY_UPSTREAM_TLS_CA_FILE="+caFile,
		"TALOS_PROXY_UPSTREAM_TLS_CERT_FILE="+sideCert, "TALOS_PROXY_UPSTREAM_TLS_KEY_FILE="+sideKey,
		"TALOS_PROXY_EXTAUTHZ_HOST=127.0.0.1", "TALOS_PROXY_EXTAUTHZ_PORT=0",
		"TALOS_PROXY_HTTP_HOST=127.0.0.1", "TALOS_PROXY_HTTP_PORT=0",
		"TALOS_PROXY_METRICS_HOST=127.0.0.1", "TALOS_PROXY_METRICS_PORT=0",
	)
	srv, _ := launchServer(t, []string{"serve", "--with-proxy"}, env)
	p := &testProxy{log: srv.log, grpc: srv.log.waitAddr(t, "ext_authz server started")}
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.client = authv3.NewAuthorizationClient(conn)

	c := sdk(srv.http)
	c.GetConfig().AddDefaultHeader("Authorization", "Bearer "+admin)
	secret, id := issueKey(t, c)
	if r := p.check(t, secret); !allowed(r) {
		t.Fatalf("check of a valid key through the embedded sidecar: %v", r.GetStatus())
	}
	// Revocation reaches it over the same mTLS connection (xDS).
	revokeKey(t, c, id)
	eventually(t, "the revoked key is denied", 10*time.Second, func() bool { return !allowed(p.check(t, secret)) })
	if strings.Contains(srv.log.String(), admin) {
		t.Error("the log holds the admin token")
	}
}
