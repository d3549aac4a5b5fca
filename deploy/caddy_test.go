package deploy_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCaddy runs caddy with caddy/Caddyfile.tmpl in front of the test app,
// each request authorized by the extauthz HTTP handler.
func TestCaddy(t *testing.T) {
	t.Parallel()
	caddy := lookBinary(t, "caddy", "/usr/bin/caddy", "apt-get install caddy")
	client := newTestClient(t)
	app := newTestApp(t)
	base := startCaddy(t, caddy, client, newTestSidecar(t), app)
	runProxyCases(t, client, base)

	t.Run("sidecar down", func(t *testing.T) {
		// forward_auth fails closed with reverse_proxy's 502.
		base := startCaddy(t, caddy, client, closedAddr(t), app)
		checkSidecarDown(t, client, base, http.StatusBadGateway)
	})
}

func startCaddy(t *testing.T, caddy string, client *http.Client, sidecar, app string) string {
	t.Helper()
	return startProxy(t, client, func(port int) *process {
		dir := t.TempDir()
		path := filepath.Join(dir, "Caddyfile")
		conf := caddyConf{Site: "http://127.0.0.1:" + strconv.Itoa(port), SidecarAddr: sidecar, AppAddr: app}
		if err := os.WriteFile(path, render(t, "caddy/Caddyfile.tmpl", conf), 0o600); err != nil {
			t.Fatal(err)
		}
		// Caddy keeps its state (autosave, certificates) under these.
		env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		return startProcess(t, env, caddy, "run", "--config", path, "--adapter", "caddyfile")
	})
}
