package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/talos-project/talos/pkg/config"
)

// talosRun runs talos with args and environ and returns its output and
// exit code.
func talosRun(t *testing.T, environ []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, environ, &out, &errOut)
	if err != nil {
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), exitCodeOf(err)
}

// TestMigrateCommands runs every migrate command on every backend, the
// DSN given only by TALOS_DB_DSN: up lists what it applied, status reads
// only and --check gates on pending, down refuses an irreversible step with
// nothing changed and round-trips with up, force needs --yes.
func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			var env []string
			for _, kv := range b.env {
				if strings.HasPrefix(kv, "TALOS_DB_DSN=") {
					env = append(env, kv)
				}
			}
			talos := func(wantCode int, args ...string) string {
				t.Helper()
				out, errOut, code := talosRun(t, env, append([]string{"migrate"}, args...)...)
				if code != wantCode {
					t.Fatalf("talos migrate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out, errOut)
				}
				return out + errOut
			}
			if b.name == "sqlite" {
				path := strings.TrimPrefix(env[0], "TALOS_DB_DSN=sqlite://")
				if out := talos(exitServer, "status"); !strings.Contains(out, "does not exist") {
					t.Errorf("status of a missing file:\n%s", out)
				}
				if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("status created %s: %v", path, err)
				}
			} else {
				out := talos(exitNegative, "status", "--check")
				if strings.Count(out, "pending") < 2 || !strings.Contains(out, "2 migrations pending") {
					t.Errorf("status --check of an empty database:\n%s", out)
				}
			}

			if out := talos(exitOK, "up"); out != "Applied 0001_init\nApplied 0002_signing_keys\n2 migrations applied.\n" {
				t.Errorf("up:\n%s", out)
			}
			if out := talos(exitOK, "up"); out != "Database schema is up to date.\n" {
				t.Errorf("second up:\n%s", out)
			}
			if out := talos(exitOK, "status", "--check"); strings.Contains(out, "pending") || strings.Count(out, "applied") != 2 {
				t.Errorf("status --check after up:\n%s", out)
			}

			out := talos(exitNegative, "down", "--steps", "2")
			if !strings.Contains(out, "0001_init") || !strings.Contains(out, "irreversible") || strings.Contains(out, "Reversed") {
				t.Errorf("down --steps 2:\n%s", out)
			}
			talos(exitOK, "status", "--check") // nothing changed

			if out := talos(exitOK, "down"); out != "Reversed 0002_signing_keys\n1 migration reversed.\n" {
				t.Errorf("down:\n%s", out)
			}
			if out := talos(exitNegative, "status", "--check"); !strings.Contains(out, "1 migration pending") {
				t.Errorf("status --check after down:\n%s", out)
			}
			if out := talos(exitOK, "up"); out != "Applied 0002_signing_keys\n1 migration applied.\n" {
				t.Errorf("up after down:\n%s", out)
			}

			if out := talos(exitUsage, "force", "1"); !strings.Contains(out, "--yes") {
				t.Errorf("force without --yes:\n%s", out)
			}
			talos(exitOK, "status", "--check") // force without --yes changed nothing
			talos(exitUsage, "force", "one", "--yes")
			talos(exitNegative, "force", "9", "--yes")
			talos(exitOK, "force", "1", "--yes")
			talos(exitNegative, "status", "--check")
			talos(exitOK, "force", "2", "--yes")
			talos(exitOK, "status", "--check")
			talos(exitUsage, "down", "--steps", "0")
		})
	}
}

// TestMigrate_ConfigNeedsOnlyDSN: through a config file, migrate asks for
// db.dsn and nothing else.
func TestMigrate_ConfigNeedsOnlyDSN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "talos.yaml")
	if err := os.WriteFile(cfg, []byte("db:\n  dsn: sqlite://"+filepath.Join(dir, "t.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := talosRun(t, nil, "migrate", "up", "--config", cfg); code != exitOK || !strings.Contains(out, "2 migrations applied") {
		t.Errorf("migrate up with a DSN-only config: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := talosRun(t, nil, "migrate", "status", "--check", "--config", cfg); code != exitOK {
		t.Errorf("migrate status --check: exit %d\n%s%s", code, out, errOut)
	}
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("log:\n  level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := talosRun(t, nil, "migrate", "up", "--config", empty); code != exitUsage || !strings.Contains(errOut, "db.dsn is required") {
		t.Errorf("migrate up without a DSN: exit %d, %s", code, errOut)
	}
	if _, errOut, code := talosRun(t, nil, "migrate", "up", "--database", "oracle://x@127.0.0.1/db"); code != exitUsage || !strings.Contains(errOut, "not supported") {
		t.Errorf("migrate up of an unsupported scheme: exit %d, %s", code, errOut)
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	if out, _, code := talosRun(t, nil, "version"); code != exitOK || !strings.HasPrefix(out, "talos ") {
		t.Errorf("version = %q, exit %d", out, code)
	}
}

const (
	cfgSecret = "config-check-secret-0123456789abcdef"
	cfgDBPass = "db-password-9876543210"
)

func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "talos.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigCheck: exit 0 with the warnings printed for a valid
// configuration, exitUsage for any error; --proxy applies the sidecar's
// rules; the CLI's own variables draw no warning.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	valid := writeConfig(t, "credentials:\n  issuer: http://t\nsecrets:\n  hmac:\n    current: "+cfgSecret+"\ndb:\n  dsn: sqlite://x.db\nquota:\n  api_keys_max: 10\n")
	env := []string{"TALOS_ENDPOINT=http://127.0.0.1:4420", "TALOS_ADMIN_TOKEN=tok", "TALOS_SERVE_HTTP_PROT=1"}
	out, errOut, code := talosRun(t, env, "config", "check", "--config", valid)
	if code != exitOK || !strings.Contains(out, "TALOS_SERVE_HTTP_PROT matches no config key") || !strings.Contains(out, "not supported yet; it has no effect: quota") ||
		!strings.Contains(out, "configuration is valid (2 warnings)") {
		t.Errorf("config check of a valid file: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "TALOS_ENDPOINT") || strings.Contains(out, "TALOS_ADMIN_TOKEN") {
		t.Errorf("config check warns about the CLI's variables:\n%s", out)
	}
	if strings.Contains(out+errOut, cfgSecret) {
		t.Errorf("config check printed the secret")
	}

	proxyOnly := writeConfig(t, "proxy:\n  upstream: 127.0.0.1:4421\n")
	for name, c := range map[string]struct {
		args []string
		env  []string
		want string
	}{
		"schema error":  {[]string{"--config", writeConfig(t, "serve:\n  http:\n    port: nope\n")}, nil, "serve.http.port"},
		"missing file":  {[]string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, nil, "none.yaml"},
		"no secret":     {[]string{"--config", proxyOnly}, nil, "secrets.hmac.current is required"},
		"no dsn":        {[]string{"--config", writeConfig(t, "credentials:\n  issuer: http://t\nsecrets:\n  hmac:\n    current: "+cfgSecret+"\n")}, nil, "db.dsn is required"},
		"bad env value": {[]string{"--config", valid}, []string{"TALOS_SERVE_HTTP_PORT=x"}, "TALOS_SERVE_HTTP_PORT"},
		"proxy rules":   {[]string{"--proxy", "--config", writeConfig(t, "proxy:\n  upstream: 'not a host port'\n")}, nil, "proxy.upstream"},
	} {
		out, errOut, code := talosRun(t, c.env, append([]string{"config", "check"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("config check with %s: exit %d, want %d naming %q\n%s%s", name, code, exitUsage, c.want, out, errOut)
		}
	}
	if out, errOut, code := talosRun(t, nil, "config", "check", "--proxy", "--config", proxyOnly); code != exitOK {
		t.Errorf("config check --proxy of a sidecar config: exit %d\n%s%s", code, out, errOut)
	}
}

// TestPrintConfig: serve and proxy --print-config print the effective
// configuration, file and environment merged, every secret <redacted>, and
// exit 0 without serving.
func TestPrintConfig(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, "credentials:\n  issuer: http://printed\nsecrets:\n  hmac:\n    current: "+cfgSecret+"\n")
	env := []string{"TALOS_DB_DSN=postgres://talos:" + cfgDBPass + "@db:5432/talos", "TALOS_SERVE_HTTP_PORT=4999"}
	out, errOut, code := talosRun(t, env, "serve", "--print-config", "--config", file)
	if code != exitOK {
		t.Fatalf("serve --print-config: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"issuer: http://printed", "port: 4999", "current: <redacted>", "dsn: <redacted>"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --print-config lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{cfgSecret, cfgDBPass} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("serve --print-config shows the secret %q", secret)
		}
	}

	token := "upstream-token-0123456789abcdef-0123"
	pfile := writeConfig(t, "proxy:\n  upstream: 127.0.0.1:4421\n  upstream_token: "+token+"\n")
	out, errOut, code = talosRun(t, nil, "proxy", "--print-config", "--config", pfile)
	if code != exitOK || !strings.Contains(out, "upstream_token: <redacted>") || strings.Contains(out+errOut, token) {
		t.Errorf("proxy --print-config: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := talosRun(t, nil, "serve", "--print-config", "--config", pfile); code != exitUsage {
		t.Errorf("serve --print-config of an invalid configuration: exit %d, want %d", code, exitUsage)
	}
}

// TestCLIVariablesAreKnown: every TALOS_ variable the CLI's sources name
// is a config key or one config.Load leaves alone, so serve does not warn
// about it.
func TestCLIVariablesAreKnown(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"(TALOS_[A-Z0-9_]+)"`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]] = true
		}
	}
	if !seen["TALOS_ENDPOINT"] || !seen["TALOS_ADMIN_TOKEN"] {
		t.Fatalf("found %v; the scan is broken", seen)
	}
	for name := range seen {
		env := []string{"TALOS_CREDENTIALS_ISSUER=http://t", "TALOS_SECRETS_HMAC_CURRENT=" + cfgSecret, name + "=x"}
		cfg, err := config.Load(nil, env)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("Load with %s: %v", name, err)
			}
			continue // a config key whose value "x" is invalid: known
		}
		for _, w := range cfg.Warnings {
			if strings.Contains(w, name) {
				t.Errorf("serve would warn: %s", w)
			}
		}
	}
}
