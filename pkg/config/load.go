package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// Load builds the configuration: [Defaults], then each file in order (later
// files override earlier ones key by key; a list replaces the whole list),
// then the TALOS_* variables found in environ (a list of "NAME=value" as from
// os.Environ; Load never reads the process environment itself).
//
// A file ending in .json is parsed as JSON; any other file as YAML. Each file,
// and the set of environment variables, must pass the embedded JSON Schema:
// unknown keys, wrong types and out-of-range values are errors naming the file
// or variable and the key path. The merged result must then pass
// [Config.Validate], which also fills derived fields.
//
// Environment variables: TALOS_ + the key path upper-cased with '.' replaced
// by '_' (TALOS_CREDENTIALS_API_KEYS_DEFAULT_TTL). Lists are comma-separated
// or a JSON array ("[...]"); list items may also be set one by one as
// TALOS_<KEY>_0, TALOS_<KEY>_1, ... Items of secrets.hmac.retired,
// credentials.issuer_retired and multitenancy.networks that are objects are
// given as a JSON array (or one JSON object per indexed variable). An empty
// value clears a list and is ignored, with a warning, for any other key.
// Variables that match no key are ignored and reported in Config.Warnings,
// except TALOS_TEST_*, which belongs to the test suites.
//
// Errors never contain the value of a secret key.
func Load(files []string, environ []string) (Config, error) {
	sch, err := compileSchema()
	if err != nil {
		return Config{}, err
	}
	return load(sch, files, environ, (*Config).Validate)
}

// LoadDB is [Load] for talos migrate, which uses only the database: the same
// sources, order, schema check and environment rules, but of the merged
// result only db.dsn is checked (its scheme) and required, so that a config
// file without credentials.issuer or secrets.hmac.current serves. The other
// sections are schema-checked only.
func LoadDB(files []string, environ []string) (Config, error) {
	sch, err := compileSchema()
	if err != nil {
		return Config{}, err
	}
	return load(sch, files, environ, func(c *Config) error {
		var errs []error
		checkDB(c, func(path, format string, args ...any) {
			errs = append(errs, fmt.Errorf(path+": "+format, args...))
		})
		if len(errs) == 0 {
			errs = append(errs, c.RequireDSN())
		}
		return errors.Join(errs...)
	})
}

// LoadProxy is [Load] for talos proxy: the same sources, order, schema check
// and environment rules, but the merged result is checked by
// [Config.ValidateProxy] instead of [Config.Validate]. A proxy needs neither
// an issuer nor the HMAC secret (it never verifies a key itself), so neither
// is required; the sections it does not use are schema-checked only and their
// derived fields are not filled.
//
// When secrets.hmac.current is set anyway (a configuration shared with the
// control plane), LoadProxy adds a warning: the HMAC secret should not be
// present on sidecar hosts.
func LoadProxy(files []string, environ []string) (Config, error) {
	sch, err := compileSchema()
	if err != nil {
		return Config{}, err
	}
	return load(sch, files, environ, validateProxy)
}

func validateProxy(c *Config) error {
	if err := c.ValidateProxy(); err != nil {
		return err
	}
	if !c.Secrets.HMAC.Current.IsZero() {
		c.warn("secrets.hmac.current is set but talos proxy does not use it; keep the HMAC secret off sidecar hosts")
	}
	return nil
}

// load reads and merges the sources, then checks the result with validate.
func load(sch *jsonschema.Schema, files []string, environ []string, validate func(*Config) error) (Config, error) {
	k := koanf.New(".")
	for _, name := range files {
		doc, err := readFile(name)
		if err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", name, err)
		}
		if probs := schemaProblems(sch, doc); len(probs) > 0 {
			return Config{}, joinProblems(probs, func(problem) string { return "config file " + name })
		}
		if err := k.Load(confmap.Provider(doc, ""), nil); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", name, err)
		}
	}

	env, err := readEnv(environ)
	if err != nil {
		return Config{}, err
	}
	if probs := schemaProblems(sch, env.doc); len(probs) > 0 {
		return Config{}, joinProblems(probs, env.sourceOf)
	}
	if err := k.Load(confmap.Provider(env.doc, ""), nil); err != nil {
		return Config{}, fmt.Errorf("environment: %w", err)
	}

	cfg := Defaults()
	err = k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:  decodeHook,
			ErrorUnused: true,
			TagName:     "koanf",
		},
	})
	if err != nil {
		return Config{}, fmt.Errorf("decode config: %w", err)
	}
	cfg.Warnings = env.warnings
	if err := validate(&cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func joinProblems(probs []problem, source func(problem) string) error {
	errs := make([]error, len(probs))
	for i, p := range probs {
		errs[i] = errors.New(source(p) + ": " + p.String())
	}
	return errors.Join(errs...)
}

// readFile parses one config file into a JSON-shaped document.
func readFile(name string) (map[string]any, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var v any
	if strings.EqualFold(filepath.Ext(name), ".json") {
		v, err = jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
	} else if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if v == nil { // empty YAML document
		return map[string]any{}, nil
	}
	v, err = normalize(v, "")
	if err != nil {
		return nil, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		// Do not echo the content: a secret file passed by mistake as the
		// config file would end up in the logs.
		return nil, fmt.Errorf("top level must be a mapping of config keys, got %s", jsonTypeName(v))
	}
	return doc, nil
}

// normalize turns decoded YAML or JSON into the value types the JSON Schema
// validator and the decoder understand: map[string]any, []any, string, bool,
// nil, int64 and finite float64.
func normalize(v any, path string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, item := range v {
			n, err := normalize(item, join(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, item := range v {
			key := fmt.Sprint(k)
			n, err := normalize(item, join(path, key))
			if err != nil {
				return nil, err
			}
			out[key] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			n, err := normalize(item, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case nil, string, bool, int64:
		return v, nil
	case int:
		return int64(v), nil
	case uint64:
		if v > math.MaxInt64 {
			return float64(v), nil
		}
		return int64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: must be a finite number", path)
		}
		return v, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s: number out of range", path)
		}
		return f, nil
	case time.Time: // an unquoted YAML timestamp
		return v.Format(time.RFC3339Nano), nil
	case []byte: // !!binary
		return string(v), nil
	default:
		return nil, fmt.Errorf("%s: unsupported value of type %T", path, v)
	}
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// decodeHook converts document values into the package's types; everything
// else is decoded by mapstructure (without weak typing: the schema has already
// checked the types).
func decodeHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	switch to {
	case durationType:
		switch v := data.(type) {
		case string:
			return parseDuration(v)
		case int64:
			return secondsToDuration(float64(v))
		case float64:
			return secondsToDuration(v)
		}
	case secretType:
		if s, ok := data.(string); ok {
			return NewSecret(s), nil
		}
	case timeType:
		if s, ok := data.(string); ok {
			return time.Parse(time.RFC3339, s)
		}
	case retiredSecretType, retiredIssuerType:
		if s, ok := data.(string); ok {
			return map[string]any{"value": s}, nil
		}
	case bearerTokenType:
		if s, ok := data.(string); ok {
			return map[string]any{"token": s}, nil
		}
	}
	return data, nil
}
