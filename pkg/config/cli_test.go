package config_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/config"
)

// TestLoad_CLIVariables: the CLI's own variables draw no warning, and a
// misspelled one still does.
func TestLoad_CLIVariables(t *testing.T) {
	t.Parallel()
	env := []string{"TALOS_ENDPOINT=http://127.0.0.1:4420", "TALOS_ADMIN_TOKEN=admin-token-value", "TALOS_ENDPIONT=x"}
	for _, load := range []func([]string, []string) (config.Config, error){config.Load, config.LoadProxy} {
		cfg, err := load(nil, append(env, requiredEnv...))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"environment variable TALOS_ENDPIONT matches no config key; ignored"}
		var got []string
		for _, w := range cfg.Warnings {
			if strings.HasPrefix(w, "environment variable") {
				got = append(got, w)
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("warnings (-want +got):\n%s", d)
		}
	}
	if got := config.CLIVariables(); len(got) < 2 {
		t.Errorf("CLIVariables = %v", got)
	}
}

// TestLoadDB: migrate's loader needs only db.dsn; a bad scheme and a missing
// DSN are errors; the rest of the file is still schema-checked.
func TestLoadDB(t *testing.T) {
	t.Parallel()
	f := writeFile(t, "talos.yaml", "db:\n  dsn: sqlite:///var/lib/talos/talos.db\n")
	cfg, err := config.LoadDB([]string{f}, nil)
	if err != nil || cfg.DB.DSN.Value() != "sqlite:///var/lib/talos/talos.db" {
		t.Fatalf("LoadDB = %q, %v", cfg.DB.DSN.Value(), err)
	}
	if _, err := config.Load([]string{f}, nil); err == nil {
		t.Error("Load of a file without issuer and secret: no error (the test would prove nothing)")
	}
	for name, doc := range map[string]string{
		"no dsn":     "log:\n  level: info\n",
		"bad scheme": "db:\n  dsn: oracle://x\n",
		"schema":     "db:\n  dsn: sqlite://x.db\nserve:\n  http:\n    port: nope\n",
	} {
		if _, err := config.LoadDB([]string{writeFile(t, "c.yaml", doc)}, nil); err == nil {
			t.Errorf("LoadDB with %s: no error", name)
		}
	}
}

// TestRedactedYAML: every set secret is <redacted>, its value appears
// nowhere, and other keys are shown.
func TestRedactedYAML(t *testing.T) {
	t.Parallel()
	dsnPassword := "dsn-pass-0123456789"
	token := "bearer-token-0123456789abcdef0123"
	cfg := mustLoad(t, nil, append([]string{
		"TALOS_DB_DSN=postgres://talos:" + dsnPassword + "@db:5432/talos",
		`TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=[{"token":"` + token + `"}]`,
		`TALOS_SECRETS_HMAC_RETIRED=["` + testSecret2 + `"]`,
	}, requiredEnv...))
	b, err := cfg.RedactedYAML()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, secret := range []string{testSecret, testSecret2, dsnPassword, token} {
		if strings.Contains(out, secret) {
			t.Errorf("output contains the secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"current: <redacted>", "dsn: <redacted>", "token: <redacted>", "issuer: " + testIssuer, "port: 4420", "max_size: 104857600"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
