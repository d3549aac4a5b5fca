package config

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// A leaf is one settable key: a field of the Config tree that is not itself a
// section. Lists are leaves (their items are validated by the schema).
type leaf struct {
	path  string // dotted key path, e.g. "serve.http.port"
	env   string // environment variable, e.g. "TALOS_SERVE_HTTP_PORT"
	typ   reflect.Type
	index []int // for reflect.Value.FieldByIndex on a Config
}

const envPrefix = "TALOS_"

var (
	secretType        = reflect.TypeFor[Secret]()
	durationType      = reflect.TypeFor[Duration]()
	timeType          = reflect.TypeFor[time.Time]()
	retiredSecretType = reflect.TypeFor[RetiredSecret]()
	bearerTokenType   = reflect.TypeFor[BearerToken]()
	retiredIssuerType = reflect.TypeFor[RetiredIssuer]()
)

// leaves lists every key of Config in declaration order, derived from the
// koanf tags, so the struct is the single source of truth for key names.
func leaves() []leaf {
	var out []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, squash := koanfKey(f)
			idx := append(append([]int(nil), index...), i)
			if squash {
				walk(f.Type, prefix, idx)
				continue
			}
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			if f.Type.Kind() == reflect.Struct && f.Type != secretType && f.Type != timeType {
				walk(f.Type, path, idx)
				continue
			}
			out = append(out, leaf{
				path:  path,
				env:   envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_")),
				typ:   f.Type,
				index: idx,
			})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// koanfKey returns the config key of a struct field (its koanf tag up to the
// first comma) and whether the field is an exported struct squashed into its
// parent (koanf:",squash"), whose keys then sit beside the parent's own.
func koanfKey(f reflect.StructField) (name string, squash bool) {
	name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	squash = name == "" && f.IsExported() && f.Type.Kind() == reflect.Struct &&
		slices.Contains(strings.Split(opts, ","), "squash")
	return name, squash
}

// isSecret reports whether values of type t must never be shown.
func isSecret(t reflect.Type) bool {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t == secretType || t == retiredSecretType || t == bearerTokenType
}

// MarshalJSON renders c as a configuration document: snake_case keys as in a
// config file, durations as Go duration strings, secrets redacted. Derived
// fields and Warnings are left out. It is meant for --print-config and for
// logging the effective configuration.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.document(redacted)) }

// PrintRedacted is how RedactedYAML shows a set secret.
const PrintRedacted = "<redacted>"

// RedactedYAML renders c as a YAML configuration document, for
// --print-config: every key, snake_case as in a config file, with every set
// secret shown as PrintRedacted and an unset one as "". Derived fields and
// Warnings are left out.
func (c Config) RedactedYAML() ([]byte, error) {
	// Through JSON, so that every value renders as in MarshalJSON (durations
	// as strings, text marshalers as text).
	b, err := json.Marshal(c.document(PrintRedacted))
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(yamlNumbers(doc)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// yamlNumbers replaces the json.Numbers of v by int64 or float64, which YAML
// renders as plain numbers.
func yamlNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = yamlNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = yamlNumbers(x)
		}
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		if f, err := v.Float64(); err == nil {
			return f
		}
	}
	return v
}

// document is c as a configuration document, set secrets shown as mark.
func (c Config) document(mark string) map[string]any {
	v := reflect.ValueOf(c)
	doc := map[string]any{}
	for _, l := range leaves() {
		val, ok := jsonValue(v.FieldByIndex(l.index), mark)
		if ok {
			setPath(doc, l.path, val)
		}
	}
	return doc
}

// jsonValue converts a leaf to a value encoding/json renders in config shape.
// It reports false for values that are left out (nil pointers, zero times).
func jsonValue(v reflect.Value, mark string) (any, bool) {
	switch {
	case v.Type() == secretType:
		if v.Interface().(Secret).IsZero() {
			return "", true
		}
		return mark, true
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return nil, false
		}
		return v.Elem().Interface(), true
	case v.Type() == timeType:
		t := v.Interface().(time.Time)
		if t.IsZero() {
			return nil, false
		}
		return t.Format(time.RFC3339Nano), true
	case v.Kind() == reflect.Slice:
		items := make([]any, 0, v.Len())
		for i := range v.Len() {
			if item, ok := jsonValue(v.Index(i), mark); ok {
				items = append(items, item)
			}
		}
		return items, true
	case v.Kind() == reflect.Struct && v.Type() != secretType:
		obj := map[string]any{}
		for i := range v.NumField() {
			name, squash := koanfKey(v.Type().Field(i))
			if squash {
				if inner, ok := jsonValue(v.Field(i), mark); ok {
					if m, ok := inner.(map[string]any); ok {
						maps.Copy(obj, m)
					}
				}
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			if item, ok := jsonValue(v.Field(i), mark); ok {
				obj[name] = item
			}
		}
		return obj, true
	default:
		return v.Interface(), true
	}
}

// setPath sets m[a][b][c] = val for path "a.b.c", creating maps on the way.
func setPath(m map[string]any, path string, val any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = val
}
