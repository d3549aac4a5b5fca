package config_test

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/config"
)

// configKeys returns every key path of Config, taken from MarshalJSON of the
// defaults (objects are sections, everything else is a key).
func configKeys(t *testing.T) []string {
	t.Helper()
	c := config.Defaults()
	// Nil pointers are left out of MarshalJSON.
	c.DB.AutoMigrate, c.Serve.GRPC.Reflection, c.Proxy.ExtAuthz.Reflection = new(bool), new(bool), new(bool)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(sub, prefix+k+".")
				continue
			}
			keys = append(keys, prefix+k)
		}
	}
	walk(doc, "")
	slices.Sort(keys)
	return keys
}

func envName(key string) string {
	return "TALOS_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func TestSchema_MatchesConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("config.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	defs, _ := schema["$defs"].(map[string]any)
	resolve := func(s map[string]any) map[string]any {
		if ref, ok := s["$ref"].(string); ok {
			return defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		return s
	}
	var keys []string
	var walk func(s map[string]any, prefix string)
	walk = func(s map[string]any, prefix string) {
		s = resolve(s)
		props, ok := s["properties"].(map[string]any)
		if !ok || s["type"] != "object" {
			keys = append(keys, strings.TrimSuffix(prefix, "."))
			return
		}
		if s["additionalProperties"] != false {
			t.Errorf("schema object %q lacks additionalProperties: false", prefix)
		}
		for name, sub := range props {
			walk(sub.(map[string]any), prefix+name+".")
		}
	}
	walk(schema, "")
	slices.Sort(keys)
	if diff := cmp.Diff(configKeys(t), keys); diff != "" {
		t.Errorf("config.schema.json and Config disagree on keys (-Config +schema):\n%s", diff)
	}
}

func TestEnvNames_Unambiguous(t *testing.T) {
	t.Parallel()
	keys := configKeys(t)
	seen := map[string]string{}
	for _, k := range keys {
		name := envName(k)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share the variable %s", k, other, name)
		}
		seen[name] = k
	}
	indexed := regexp.MustCompile(`_(0|[1-9][0-9]*)$`)
	for name, k := range seen {
		if indexed.MatchString(name) {
			t.Errorf("variable %s of %s looks like an indexed list item", name, k)
		}
	}
}

// TestDocs_ListEveryKey keeps docs/configuration.md in step with Config.
func TestDocs_ListEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, k := range configKeys(t) {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
		if !strings.Contains(doc, "`"+envName(k)+"`") {
			t.Errorf("docs/configuration.md does not name `%s`", envName(k))
		}
	}
}

func TestConfig_MarshalJSON_RoundTrip(t *testing.T) {
	t.Parallel()
	want := mustLoad(t, []string{"testdata/talos.yaml"}, nil)
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"current":"[redacted]"`) {
		t.Fatalf("secrets are not redacted in %s", b)
	}

	// Put the secrets back, as an operator would after --print-config.
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	set := func(path string, v any) {
		parts := strings.Split(path, ".")
		m := doc
		for _, p := range parts[:len(parts)-1] {
			m = m[p].(map[string]any)
		}
		m[parts[len(parts)-1]] = v
	}
	set("secrets.hmac.current", want.Secrets.HMAC.Current.Value())
	set("secrets.hmac.retired", []any{
		want.Secrets.HMAC.Retired[0].Value.Value(),
		map[string]any{"value": want.Secrets.HMAC.Retired[1].Value.Value(), "expires_at": "2026-07-01T12:00:00Z"},
	})
	set("db.dsn", want.DB.DSN.Value())
	set("cache.redis.password", want.Cache.Redis.Password.Value())
	set("credentials.derived_tokens.jwt.signing_keys.urls", []any{want.Credentials.DerivedTokens.JWT.SigningKeys.URLs[0].Value()})
	b, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}

	got := mustLoad(t, []string{writeFile(t, "printed.json", string(b))}, nil)
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
	if keys := slices.Sorted(maps.Keys(doc)); len(keys) != 14 {
		t.Errorf("top-level sections = %q, want 14", keys)
	}
}

func TestDocs_MinimalExampleLoads(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "# talos.yaml\n")
	if start < 0 {
		t.Fatal("docs/configuration.md has no \"# talos.yaml\" example")
	}
	end := strings.Index(doc[start:], "```")
	cfg := mustLoad(t, []string{writeFile(t, "talos.yaml", doc[start:start+end])}, nil)
	if err := cfg.RequireDSN(); err != nil {
		t.Errorf("RequireDSN() = %v", err)
	}
	if len(cfg.Warnings) != 0 || len(cfg.Unsupported()) != 0 {
		t.Errorf("Warnings = %q, Unsupported() = %q; want none", cfg.Warnings, cfg.Unsupported())
	}
}
