package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/talos-project/talos/controlplane/grpcapi"
	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf"
)

// listenerTLS is the server side of one listener's tls block: nil when TLS
// is off. nextProtos are the ALPN protocols the listener speaks.
func listenerTLS(path string, t config.TLS, log *slog.Logger, nextProtos ...string) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	minVersion, err := tlsconf.ParseMinVersion(string(t.MinVersion))
	if err != nil {
		return nil, fmt.Errorf("%s.min_version: %w", path, err)
	}
	srv, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile,
		ClientAuth: tlsconf.ClientAuth(t.ClientAuth), MinVersion: minVersion,
		Logger: log.With(slog.String("tls", path)),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return srv.Config(nextProtos...), nil
}

// linkTLS is the client side of an outgoing link's tls block: nil when TLS
// is off.
func linkTLS(path string, t config.ClientTLS, log *slog.Logger) (*tlsconf.Client, error) {
	if !t.Enabled {
		return nil, nil
	}
	minVersion, err := tlsconf.ParseMinVersion(string(t.MinVersion))
	if err != nil {
		return nil, fmt.Errorf("%s.min_version: %w", path, err)
	}
	c, err := tlsconf.NewClient(tlsconf.ClientOptions{
		CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName,
		MinVersion: minVersion, Logger: log.With(slog.String("tls", path)),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// adminAuth builds the control plane's one auth rule from
// serve.admin.auth: tokens and certificate identities with their roles, and
// the mesh proxies whose x-forwarded-client-cert is trusted.
func adminAuth(a config.AdminAuth) (*grpcapi.Auth, error) {
	var c grpcapi.AuthConfig
	for _, t := range a.RoleTokens() {
		c.Tokens = append(c.Tokens, grpcapi.Token{Value: t.Token, Role: t.Role})
	}
	for _, id := range a.Identities {
		c.Identities = append(c.Identities, grpcapi.IdentityRule{
			Subject: id.Subject, URISAN: id.URISAN, DNSSAN: id.DNSSAN, Role: id.IdentityRole(),
		})
	}
	c.TrustXFCC, c.XFCCFrom = a.TrustXFCC, a.XFCCFrom
	auth, err := grpcapi.NewAuth(c)
	if err != nil {
		return nil, fmt.Errorf("serve.admin.auth: %w", err)
	}
	return auth, nil
}

// embeddedProxyToken is the token the sidecar of serve --with-proxy sends
// when proxy.upstream_token is unset: the least-privileged configured token
// that works, a sidecar one first, then an admin one; "" when none exists
// (then the embedded sidecar must prove itself with a certificate).
func embeddedProxyToken(a config.AdminAuth) config.Secret {
	tokens := a.RoleTokens()
	for _, want := range []credential.Role{credential.RoleSidecar, credential.RoleAdmin} {
		for _, t := range tokens {
			if t.Role == want {
				return config.NewSecret(t.Token)
			}
		}
	}
	return config.Secret{}
}
