package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// envDoc is the TALOS_* environment as a partial config document.
type envDoc struct {
	doc      map[string]any
	vars     map[string]string // key path -> variable name(s) that set it
	warnings []string
}

// sourceOf names the variable behind a schema problem.
func (e envDoc) sourceOf(p problem) string {
	path := stripIndexes(p.path)
	for key, name := range e.vars {
		if path == key || strings.HasPrefix(path, key+".") {
			return "environment variable " + name
		}
	}
	return "environment"
}

const testEnvPrefix = "TALOS_TEST_"

// cliVariables are the environment variables of the talos CLI's client
// commands (keys, token), which share the TALOS_ prefix but are no config
// key: Load neither reads nor warns about them.
var cliVariables = []string{"TALOS_ENDPOINT", "TALOS_ADMIN_TOKEN"}

// CLIVariables returns the environment variables of the talos CLI that Load
// leaves alone.
func CLIVariables() []string { return slices.Clone(cliVariables) }

// readEnv maps TALOS_* variables onto keys by matching whole names against
// the known keys (key names contain underscores, so splitting on '_' cannot
// work).
func readEnv(environ []string) (envDoc, error) {
	byName := map[string]leaf{}
	unprefixed := map[string]leaf{}
	for _, l := range leaves() {
		byName[l.env] = l
		unprefixed[strings.TrimPrefix(l.env, envPrefix)] = l
	}

	vars := map[string]string{} // the last occurrence wins, as in os/exec
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if ok && name != "" {
			vars[name] = value
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)

	out := envDoc{doc: map[string]any{}, vars: map[string]string{}}
	whole := map[string]string{}           // key path -> variable
	indexed := map[string]map[int]string{} // key path -> index -> variable
	for _, name := range names {
		if !strings.HasPrefix(name, envPrefix) {
			if l, ok := unprefixed[name]; ok {
				if _, set := vars[l.env]; !set {
					out.warnings = append(out.warnings, fmt.Sprintf(
						"environment variable %s is ignored: unlike Ory Talos, Talos reads only TALOS_ variables; use %s", name, l.env))
				}
			}
			continue
		}
		if strings.HasPrefix(name, testEnvPrefix) || slices.Contains(cliVariables, name) {
			continue
		}
		if l, ok := byName[name]; ok {
			whole[l.path] = name
			continue
		}
		if base, i, ok := splitIndex(name); ok {
			if l, ok := byName[base]; ok && l.typ.Kind() == reflect.Slice {
				if indexed[l.path] == nil {
					indexed[l.path] = map[int]string{}
				}
				indexed[l.path][i] = name
				continue
			}
		}
		out.warnings = append(out.warnings, fmt.Sprintf("environment variable %s matches no config key; ignored", name))
	}

	var errs []error
	for _, l := range leaves() {
		if name, ok := whole[l.path]; ok {
			if _, both := indexed[l.path]; both {
				errs = append(errs, fmt.Errorf("environment variable %s: set either %s or %s_0, %s_1, ..., not both", name, name, name, name))
				continue
			}
			raw := vars[name]
			if raw == "" && l.typ.Kind() != reflect.Slice {
				out.warnings = append(out.warnings, fmt.Sprintf("environment variable %s is empty; ignored", name))
				continue
			}
			v, err := envValue(l.typ, raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s: %s: %w", name, l.path, err))
				continue
			}
			setPath(out.doc, l.path, v)
			out.vars[l.path] = name
			continue
		}
		items, ok := indexed[l.path]
		if !ok {
			continue
		}
		idxs := make([]int, 0, len(items))
		for i := range items {
			idxs = append(idxs, i)
		}
		slices.Sort(idxs)
		list := make([]any, len(idxs))
		used := make([]string, len(idxs))
		for pos, i := range idxs {
			if i != pos {
				errs = append(errs, fmt.Errorf("environment variable %s: indexes must run from %s_0 without gaps", items[i], l.env))
				list = nil
				break
			}
			v, err := envItem(l.typ.Elem(), vars[items[i]])
			if err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s: %s[%d]: %w", items[i], l.path, i, err))
				list = nil
				break
			}
			list[i] = v
			used[i] = items[i]
		}
		if list != nil {
			setPath(out.doc, l.path, list)
			out.vars[l.path] = strings.Join(used, ", ")
		}
	}
	return out, errors.Join(errs...)
}

// splitIndex splits "TALOS_X_12" into "TALOS_X" and 12.
func splitIndex(name string) (string, int, bool) {
	at := strings.LastIndexByte(name, '_')
	if at < 0 || at == len(name)-1 {
		return "", 0, false
	}
	digits := name[at+1:]
	if len(digits) > 1 && digits[0] == '0' {
		return "", 0, false
	}
	i, err := strconv.Atoi(digits)
	if err != nil || i < 0 || i > 10000 {
		return "", 0, false
	}
	return name[:at], i, true
}

// envValue converts a variable's text into the JSON value the schema expects
// for a key of type t.
func envValue(t reflect.Type, raw string) (any, error) {
	secret := isSecret(t)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	shown := func() string {
		if secret {
			return ""
		}
		return fmt.Sprintf(" (got %q)", raw)
	}
	switch {
	case t == durationType, t == secretType, t.Kind() == reflect.String:
		return raw, nil
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return nil, errors.New("must be true or false" + shown())
		}
		return b, nil
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, errors.New("must be an integer" + shown())
		}
		return i, nil
	case t.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, errors.New("must be a number" + shown())
		}
		return f, nil
	case t.Kind() == reflect.Slice:
		if strings.HasPrefix(strings.TrimSpace(raw), "[") {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(raw)))
			if err != nil {
				if secret {
					return nil, errors.New("not a valid JSON array")
				}
				return nil, fmt.Errorf("not a valid JSON array: %w", err)
			}
			return normalize(v, "")
		}
		list := []any{}
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		return list, nil
	default:
		return nil, fmt.Errorf("cannot be set from the environment (type %s)", t)
	}
}

// envItem converts one indexed list item (TALOS_<KEY>_<i>). Items of object
// lists may be a JSON object; anything else is a bare string.
func envItem(elem reflect.Type, raw string) (any, error) {
	if elem.Kind() == reflect.Struct && elem != secretType && strings.HasPrefix(strings.TrimSpace(raw), "{") {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(raw)))
		if err != nil {
			return nil, errors.New("not a valid JSON object")
		}
		return normalize(v, "")
	}
	return raw, nil
}
