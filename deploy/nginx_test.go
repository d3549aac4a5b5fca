package deploy_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestNginx runs nginx with nginx/nginx.conf.tmpl in front of the test app,
// each request authorized by the extauthz HTTP handler.
func TestNginx(t *testing.T) {
	t.Parallel()
	nginx := lookBinary(t, "nginx", "/usr/sbin/nginx", "apt-get install nginx")
	client := newTestClient(t)
	app := newTestApp(t)
	base := startNginx(t, nginx, client, newTestSidecar(t), app)
	runProxyCases(t, client, base)

	t.Run("sidecar down", func(t *testing.T) {
		base := startNginx(t, nginx, client, closedAddr(t), app)
		checkSidecarDown(t, client, base, http.StatusServiceUnavailable)
	})
}

func startNginx(t *testing.T, nginx string, client *http.Client, sidecar, app string) string {
	t.Helper()
	return startProxy(t, client, func(port int) *process {
		dir := t.TempDir()
		conf := nginxConf{
			ErrorLog:    "stderr",
			PIDFile:     filepath.Join(dir, "nginx.pid"),
			TempDir:     dir,
			Listen:      "127.0.0.1:" + strconv.Itoa(port),
			SidecarAddr: sidecar,
			AppAddr:     app,
		}
		if os.Geteuid() == 0 {
			// As root, nginx would run its workers as nobody, who cannot
			// enter the test's temp directory.
			conf.User = "root"
		}
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, render(t, "nginx/nginx.conf.tmpl", conf), 0o600); err != nil {
			t.Fatal(err)
		}
		// -e: nginx opens its compiled-in error log before it reads the
		// config.
		return startProcess(t, os.Environ(), nginx, "-p", dir, "-c", path, "-e", "stderr", "-g", "daemon off;")
	})
}
