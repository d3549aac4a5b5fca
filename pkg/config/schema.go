package config

import (
	"bytes"
	_ "embed" // for the JSON Schema
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// schemaJSON is the JSON Schema every file and the environment are checked
// against. It rejects unknown keys (additionalProperties: false everywhere),
// wrong types and out-of-range values; rules that need more than one key live
// in Config.Validate.
//
//go:embed config.schema.json
var schemaJSON []byte

const schemaURL = "https://github.com/talos-project/talos/pkg/config/config.schema.json"

// compileSchema compiles the embedded schema. It is called once per Load, so
// there is no package-level compiled state.
func compileSchema() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("embedded config schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("embedded config schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("embedded config schema: %w", err)
	}
	return sch, nil
}

// removedKeys gives a hint for keys that older Ory Talos releases accepted.
var removedKeys = map[string]string{
	"secrets.default":    "removed in Ory Talos; use secrets.hmac.current",
	"secrets.pagination": "removed in Ory Talos; the page-token key is derived from secrets.hmac.current",
}

// A problem is one schema violation at a key path such as serve.http.port or
// secrets.hmac.retired[0].value.
type problem struct {
	path, msg string
}

func (p problem) String() string {
	if p.path == "" {
		return p.msg
	}
	return p.path + ": " + p.msg
}

// schemaProblems validates doc and returns its violations sorted by path.
// Values of secret keys (see isSecret) never appear in a message; other
// values may, to help find the typo.
func schemaProblems(sch *jsonschema.Schema, doc map[string]any) []problem {
	err := sch.Validate(doc)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return []problem{{msg: err.Error()}}
	}
	secret := secretPaths()
	var out []problem
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		out = append(out, describe(e, secret)...)
	}
	walk(verr)
	slices.SortFunc(out, func(a, b problem) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

// secretPaths returns a predicate for key paths (with or without [i]
// indexes) that hold secret values.
func secretPaths() func(string) bool {
	var paths []string
	for _, l := range leaves() {
		if isSecret(l.typ) {
			paths = append(paths, l.path)
		}
	}
	return func(p string) bool {
		p = stripIndexes(p)
		for _, s := range paths {
			if p == s || strings.HasPrefix(p, s+".") {
				return true
			}
		}
		return false
	}
}

func stripIndexes(p string) string {
	var b strings.Builder
	depth := 0
	for _, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// keyPath renders a JSON pointer's tokens as serve.http.port or
// secrets.hmac.retired[0].value.
func keyPath(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		if _, err := strconv.Atoi(t); err == nil {
			b.WriteString("[" + t + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(t)
	}
	return b.String()
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func num(r *big.Rat) string {
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func describe(e *jsonschema.ValidationError, secret func(string) bool) []problem {
	path := keyPath(e.InstanceLocation)
	hide := secret(path)
	got := func(v any) string {
		if hide {
			return ""
		}
		if s, ok := v.(string); ok {
			return fmt.Sprintf(" (got %q)", s)
		}
		return fmt.Sprintf(" (got %v)", v)
	}
	at := func(msg string) []problem { return []problem{{path, msg}} }
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		if hide {
			// Under a secret key, a stray key name may be the secret itself.
			return at("unknown keys (names not shown under a secret key)")
		}
		var out []problem
		for _, p := range k.Properties {
			key := join(path, p)
			msg := "unknown key"
			if hint, ok := removedKeys[key]; ok {
				msg += " (" + hint + ")"
			}
			out = append(out, problem{key, msg})
		}
		return out
	case *kind.Required:
		var out []problem
		for _, p := range k.Missing {
			out = append(out, problem{join(path, p), "is required"})
		}
		return out
	case *kind.Type:
		return at(fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), k.Got))
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = fmt.Sprint(w)
		}
		return at("must be one of " + strings.Join(want, ", ") + got(k.Got))
	case *kind.Pattern:
		switch {
		case strings.HasSuffix(e.SchemaURL, "/$defs/duration"):
			return at("must be a Go duration such as 90s, 15m or 8760h (no days), or a number of seconds" + got(k.Got))
		case strings.HasSuffix(e.SchemaURL, "/$defs/headerName"):
			return at("must be a lowercase HTTP header name (letters, digits and !#$%&'*+-.^_`|~)" + got(k.Got))
		case strings.HasSuffix(e.SchemaURL, "/$defs/hostPort"):
			return at("must be host:port, without a scheme" + got(k.Got))
		}
		return at("must match " + k.Want + got(k.Got))
	case *kind.MinLength:
		return at(fmt.Sprintf("must be at least %d characters, got %d", k.Want, k.Got))
	case *kind.MaxLength:
		return at(fmt.Sprintf("must be at most %d characters, got %d", k.Want, k.Got))
	case *kind.Minimum:
		return at("must be >= " + num(k.Want) + " (got " + num(k.Got) + ")")
	case *kind.Maximum:
		return at("must be <= " + num(k.Want) + " (got " + num(k.Got) + ")")
	case *kind.MinItems:
		return at(fmt.Sprintf("must have at least %d items", k.Want))
	case *kind.UniqueItems:
		return at(fmt.Sprintf("items %d and %d are the same; list each once", k.Duplicates[0], k.Duplicates[1]))
	case *kind.Format:
		if k.Want == "date-time" {
			return at("must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z" + got(k.Got))
		}
		return at("must be a valid " + k.Want + got(k.Got))
	default:
		return at("is invalid (schema keyword " + strings.Join(e.ErrorKind.KeywordPath(), "/") + ")")
	}
}
