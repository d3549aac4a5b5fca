package config

import (
	"fmt"
	"reflect"
	"strings"
)

// notYetSupported lists the keys this build loads but does not act on. A key
// is reported by Unsupported when it, or a key below it, differs from its
// default. Delete a row when the feature lands.
var notYetSupported = []struct {
	key    string
	reason string
}{
	{"serve.http.cors", "CORS is not implemented yet; no CORS headers are sent"},
	{"serve.http.trust_forwarded_host", "X-Forwarded-Host is only used for tenant routing, which is not implemented yet"},
	{"cache", "caching is not implemented in the control plane yet"},
	{"last_used.num_workers", "one writer flushes last-used times; num_workers has no effect"},
	{"tracing", "tracing is not implemented yet"},
	{"quota", "quotas are not enforced yet"},
	{"multitenancy", "multi-tenancy is not implemented yet; every request belongs to the default tenant"},
}

// Unsupported lists the keys set to a non-default value that this build
// loads but does not act on yet, one line each: "key=value: reason" (the
// value is left out for secrets and lists). cmd/talos logs them at startup.
// The returned slice is new and owned by the caller.
func (c Config) Unsupported() []string {
	got, def := reflect.ValueOf(c), reflect.ValueOf(Defaults())
	var out []string
	for _, l := range leaves() {
		reason, ok := unsupportedReason(l.path)
		if !ok {
			continue
		}
		v := got.FieldByIndex(l.index)
		if sameValue(v, def.FieldByIndex(l.index)) {
			continue
		}
		out = append(out, l.path+display(v)+": "+reason)
	}
	return out
}

func unsupportedReason(path string) (string, bool) {
	for _, row := range notYetSupported {
		if path == row.key || strings.HasPrefix(path, row.key+".") {
			return row.reason, true
		}
	}
	return "", false
}

func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// display renders "=value" for scalars that are not secret, "" otherwise.
func display(v reflect.Value) string {
	if isSecret(v.Type()) || v.Kind() == reflect.Slice {
		return ""
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	return fmt.Sprintf("=%v", v.Interface())
}
