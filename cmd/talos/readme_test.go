package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliEnv, set in the environment of the test binary, makes it the talos
// command instead of running tests: the README test's ./bin/talos execs it.
const cliEnv = "TALOS_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		err := run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		os.Exit(exitCodeOf(err))
	}
	os.Exit(m.Run())
}

// readmeWalkthrough returns the sh block under "## A five-minute
// walkthrough" in the README.
func readmeWalkthrough(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## A five-minute walkthrough")
	if !ok {
		t.Fatal("README.md has no walkthrough section")
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, ok2 := strings.Cut(rest, "\n```\n")
	if !ok || !ok2 {
		t.Fatal("the walkthrough has no ```sh block")
	}
	return block
}

// TestREADME_Walkthrough runs the README's walkthrough as written, every
// command required to succeed (set -eu -o pipefail; its jq -e lines check
// the answers), against a real `talos serve --with-proxy` on free ports,
// with the addresses in API, PROXY and EXTAUTHZ, from a directory laid out
// as `make run` leaves the repository (.data/talos.yaml, bin/talos). The
// grpcurl line builds grpcurl from its pinned module (go run), which needs
// the Go module proxy the first time.
func TestREADME_Walkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	for _, tool := range []string{"bash", "curl", "jq", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README walkthrough needs %s (.ci/run installs jq): %v", tool, err)
		}
	}
	block := readmeWalkthrough(t)
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "bin", "talos"), "#!/bin/sh\n"+cliEnv+"=1 exec '"+self+"' \"$@\"\n", 0o755)
	cfg := filepath.Join(dir, ".data", "talos.yaml")
	mustWrite(t, cfg, `credentials:
  issuer: http://localhost:4420
secrets:
  hmac:
    current: readme-walkthrough-secret-0123456789abcdef
db:
  dsn: sqlite://`+filepath.Join(dir, ".data", "talos.db")+`
serve:
  http: {host: 127.0.0.1, port: 0}
  grpc: {host: 127.0.0.1, port: 0}
  metrics: {host: 127.0.0.1, port: 0}
  shutdown: {drain_delay: 0s}
proxy:
  extauthz: {host: 127.0.0.1, port: 0}
  http: {host: 127.0.0.1, port: 0}
  metrics: {host: 127.0.0.1, port: 0}
  shutdown: {drain_delay: 0s}
  rate_limit: {enabled: true} # as scripts/run.sh sets it
`, 0o600)
	srv, _ := launchServer(t, []string{"serve", "--with-proxy", "--config", cfg}, nil)
	env := []string{
		"API=" + strings.TrimPrefix(srv.http, "http://"),
		"PROXY=" + srv.log.waitAddr(t, "Proxy HTTP server started"),
		"EXTAUTHZ=" + srv.log.waitAddr(t, "ext_authz server started"),
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TALOS_") && !strings.HasPrefix(kv, "API=") && !strings.HasPrefix(kv, "PROXY=") && !strings.HasPrefix(kv, "EXTAUTHZ=") {
			env = append(env, kv)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -eu -o pipefail -x\n"+block)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README walkthrough failed: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".data", "talos.db")); err != nil {
		t.Fatal(err)
	}
	t.Logf("walkthrough output:\n%s", out.String())
}

func mustWrite(t *testing.T, name, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
