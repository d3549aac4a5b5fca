package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrateAndVersionCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "talos.yaml")
	yaml := "credentials:\n  issuer: http://t\nsecrets:\n  hmac:\n    current: migrate-test-secret-0123456789abcdef\ndb:\n  dsn: sqlite://" + filepath.Join(dir, "t.db") + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	runOK := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, nil, &out, &errOut); err != nil {
			t.Fatalf("talos %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	if out := runOK("migrate", "status", "--config", cfg); !strings.Contains(out, "pending") {
		t.Errorf("status before up:\n%s", out)
	}
	if out := runOK("migrate", "up", "--config", cfg); !strings.Contains(out, "up to date") {
		t.Errorf("up:\n%s", out)
	}
	if out := runOK("migrate", "status", "--config", cfg); strings.Contains(out, "pending") || !strings.Contains(out, "applied") {
		t.Errorf("status after up:\n%s", out)
	}
	if out := runOK("version"); !strings.HasPrefix(out, "talos ") {
		t.Errorf("version = %q", out)
	}
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"migrate", "up", "--database", "oracle://x@127.0.0.1/db"}, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("migrate up on postgres = %v, want a clear not-supported error", err)
	}
}
