package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talos-project/talos/pkg/config"
)

// FuzzLoad feeds arbitrary file contents (as YAML or JSON) and an arbitrary
// environment value to Load. Load must not panic; when it succeeds, the
// result must validate again and marshal without error, and no error may
// contain the value given for the HMAC secret.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"testdata/talos.yaml", "testdata/minimal.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, strings.HasSuffix(name, ".json"), "")
	}
	f.Add([]byte("serve: {http: {port: 1}}"), false, `["a"]`)
	f.Add([]byte("secrets: {hmac: {retired: [x, {value: y, expires_at: 2026-01-01T00:00:00Z}]}}"), false, "")
	f.Add([]byte(`{"credentials": {"clock_skew": 1e300}}`), true, "{")
	f.Add([]byte("a: &a [*a]\n"), false, "")
	f.Add([]byte("cache: {ttl: .inf}\n"), false, "1,2")
	f.Add([]byte("proxy: {cache: {redis: {enabled: true, addrs: [r:1], key_prefix: p}}, credential_headers: [a]}\n"), false, "x-a,x-b")

	load, err := config.NewLoadFunc()
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool, envValue string) {
		// Inputs run one at a time per process, and each fuzz worker process
		// has its own f.TempDir, so a fixed name is safe.
		name := filepath.Join(dir, "fuzz.yaml")
		if asJSON {
			name = filepath.Join(dir, "fuzz.json")
		}
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		const secret = "fuzz-secret-0123456789abcdef0123456789"
		env := []string{
			"TALOS_SECRETS_HMAC_CURRENT=" + secret,
			"TALOS_SECRETS_HMAC_RETIRED=" + envValue,
			"TALOS_SERVE_HTTP_CORS_ALLOWED_ORIGINS=" + envValue,
			"TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_0=" + envValue,
		}
		cfg, err := load([]string{name}, env)
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error contains the secret: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load succeeded but Validate fails: %v", err)
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatalf("Marshal: %v", err)
		}
	})
}
