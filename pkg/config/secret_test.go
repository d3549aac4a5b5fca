package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/config"
)

// configWithSecrets sets every secret key of a Config to a value that contains
// marker.
func configWithSecrets(marker string) config.Config {
	s := func(i int) config.Secret {
		return config.NewSecret(fmt.Sprintf("%s-%d-0123456789abcdef0123456789abcdef", marker, i))
	}
	c := withRequired()
	c.Secrets.HMAC.Current = s(1)
	c.Secrets.HMAC.Retired = []config.RetiredSecret{{Value: s(2)}, {Value: s(3), ExpiresAt: time.Unix(1e9, 0).UTC()}}
	c.DB.DSN = config.NewSecret("postgres://talos:" + marker + "@db/talos")
	c.Cache.Redis.Password = s(4)
	c.Serve.Admin.Auth.BearerTokens = []config.BearerToken{{Token: s(5), Role: "verifier"}}
	c.Credentials.DerivedTokens.JWT.SigningKeys.URLs = []config.Secret{config.NewSecret("base64://" + marker)}
	return c
}

func TestSecret_NeverPrinted(t *testing.T) {
	t.Parallel()
	const marker = "s3cr3tMarker"
	cfg := configWithSecrets(marker)
	secret := config.NewSecret(marker)

	type holder struct {
		exported   config.Secret
		Exported   config.Secret
		unexported config.Secret
	}
	h := holder{exported: secret, Exported: secret, unexported: secret}

	outputs := map[string]func() (string, error){}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outputs["fmt "+verb+" Secret"] = func() (string, error) { return fmt.Sprintf(verb, secret), nil }
		outputs["fmt "+verb+" *Secret"] = func() (string, error) { return fmt.Sprintf(verb, &secret), nil }
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outputs["fmt "+verb+" Config"] = func() (string, error) { return fmt.Sprintf(verb, cfg), nil }
		outputs["fmt "+verb+" holder"] = func() (string, error) { return fmt.Sprintf(verb, h), nil }
		outputs["fmt "+verb+" HMAC"] = func() (string, error) { return fmt.Sprintf(verb, cfg.Secrets.HMAC), nil }
	}
	outputs["String"] = func() (string, error) { return secret.String(), nil }
	outputs["GoString"] = func() (string, error) { return secret.GoString(), nil }
	outputs["MarshalText"] = func() (string, error) { b, err := secret.MarshalText(); return string(b), err }
	outputs["json Secret"] = func() (string, error) { b, err := json.Marshal(secret); return string(b), err }
	outputs["json Config"] = func() (string, error) { b, err := json.Marshal(cfg); return string(b), err }
	outputs["json section"] = func() (string, error) { b, err := json.Marshal(cfg.Secrets); return string(b), err }
	outputs["json DB"] = func() (string, error) { b, err := json.Marshal(cfg.DB); return string(b), err }
	outputs["slog json"] = func() (string, error) {
		var buf bytes.Buffer
		l := slog.New(slog.NewJSONHandler(&buf, nil))
		l.Info("x", "secret", secret, "cfg", cfg, "hmac", cfg.Secrets.HMAC, "redis", cfg.Cache.Redis)
		return buf.String(), nil
	}
	outputs["slog text"] = func() (string, error) {
		var buf bytes.Buffer
		l := slog.New(slog.NewTextHandler(&buf, nil))
		l.Info("x", "secret", secret, "cfg", cfg, "hmac", cfg.Secrets.HMAC, "tokens", cfg.Serve.Admin.Auth.BearerTokens)
		return buf.String(), nil
	}
	outputs["Unsupported"] = func() (string, error) { return strings.Join(cfg.Unsupported(), "\n"), nil }

	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := out()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(got, marker) {
				t.Errorf("output contains the secret:\n%s", got)
			}
		})
	}

	t.Run("marker shows redaction", func(t *testing.T) {
		t.Parallel()
		for _, got := range []string{fmt.Sprint(secret), fmt.Sprintf("%#v", secret)} {
			if got != "[redacted]" {
				t.Errorf("got %q, want [redacted]", got)
			}
		}
		b, _ := json.Marshal(secret)
		if string(b) != `"[redacted]"` {
			t.Errorf("json = %s, want \"[redacted]\"", b)
		}
	})
}

func TestSecret_Value(t *testing.T) {
	t.Parallel()
	s := config.NewSecret("abc")
	if s.Value() != "abc" || s.IsZero() {
		t.Errorf("Value() = %q, IsZero() = %v", s.Value(), s.IsZero())
	}
	var zero config.Secret
	if zero.Value() != "" || !zero.IsZero() || zero.String() != "" {
		t.Errorf("zero Secret: Value %q IsZero %v String %q", zero.Value(), zero.IsZero(), zero.String())
	}
	if !config.NewSecret("").Equal(zero) || !s.Equal(config.NewSecret("abc")) || s.Equal(config.NewSecret("abd")) {
		t.Error("Equal is wrong")
	}
	var u config.Secret
	if err := u.UnmarshalText([]byte("xyz")); err != nil || u.Value() != "xyz" {
		t.Errorf("UnmarshalText: %v, %q", err, u.Value())
	}
	if got := slog.AnyValue(s).Resolve().String(); got != "[redacted]" {
		t.Errorf("LogValue = %q", got)
	}
}
