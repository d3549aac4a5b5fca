package extauthz

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/talos-project/talos/pkg/credential"
)

// Defaults of Options.
const (
	DefaultHeaderPrefix = "x-talos-"
	DefaultRealm        = "talos"
)

// DefaultCredentialHeaders returns the default of Options.CredentialHeaders
// as a fresh slice owned by the caller.
func DefaultCredentialHeaders() []string { return []string{"authorization", "x-api-key"} }

// resolve returns o when every field with a default is set, else a copy of
// o (or of the zero Options) with the defaults filled in.
func resolve(o *Options) *Options {
	if o != nil && len(o.CredentialHeaders) > 0 && o.HeaderPrefix != "" && o.Tenant != "" && o.Realm != "" {
		return o
	}
	d := withDefaults(o)
	return &d
}

// withDefaults returns a copy of o with the defaults filled in. Its slices
// are copies, so the caller's cannot change a Server later.
func withDefaults(o *Options) Options {
	var d Options
	if o != nil {
		d = *o
	}
	if len(d.CredentialHeaders) == 0 {
		d.CredentialHeaders = DefaultCredentialHeaders()
	} else {
		d.CredentialHeaders = slices.Clone(d.CredentialHeaders)
	}
	d.ClientIPHeaders = slices.Clone(d.ClientIPHeaders)
	d.MetadataHeaders = slices.Clone(d.MetadataHeaders)
	if d.HeaderPrefix == "" {
		d.HeaderPrefix = DefaultHeaderPrefix
	}
	if d.Tenant == "" {
		d.Tenant = credential.DefaultTenant
	}
	if d.Realm == "" {
		d.Realm = DefaultRealm
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return d
}

// validate checks options that already have their defaults.
func (o *Options) validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, h := range o.CredentialHeaders {
		switch {
		case !lowerToken(h):
			errs = append(errs, fmt.Errorf("credential header %q: not a lowercase header name", h))
		case seen[h]:
			errs = append(errs, fmt.Errorf("credential header %q: listed twice", h))
		case strings.HasPrefix(h, o.HeaderPrefix):
			// The anti-spoofing removal of prefixed headers would strip it.
			errs = append(errs, fmt.Errorf("credential header %q: starts with the header prefix %q", h, o.HeaderPrefix))
		}
		seen[h] = true
	}
	for _, h := range o.ClientIPHeaders {
		if !lowerToken(h) {
			errs = append(errs, fmt.Errorf("client IP header %q: not a lowercase header name", h))
		}
	}
	if !lowerToken(o.HeaderPrefix) {
		errs = append(errs, fmt.Errorf("header prefix %q: not a lowercase header name prefix", o.HeaderPrefix))
	}
	clear(seen)
	for _, f := range o.MetadataHeaders {
		name := metaHeader(o.HeaderPrefix, f)
		switch {
		case f == "" || !lowerToken(name):
			errs = append(errs, fmt.Errorf("metadata header %q: not usable in a header name", f))
		case seen[name]:
			errs = append(errs, fmt.Errorf("metadata header %q: listed twice", f))
		}
		seen[name] = true
	}
	if h := o.CostHeader; h != "" {
		switch {
		case !lowerToken(h):
			errs = append(errs, fmt.Errorf("cost header %q: not a lowercase header name", h))
		case slices.Contains(o.CredentialHeaders, h):
			errs = append(errs, fmt.Errorf("cost header %q: is a credential header", h))
		}
	}
	if err := CheckHTTPPathPrefix(o.HTTPPathPrefix); err != nil {
		errs = append(errs, fmt.Errorf("HTTP path prefix %q: %w", o.HTTPPathPrefix, err))
	}
	for i := 0; i < len(o.Realm); i++ {
		if c := o.Realm[i]; c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			errs = append(errs, fmt.Errorf("realm %q: must not contain quotes, backslashes or control characters", o.Realm))
			break
		}
	}
	return errors.Join(errs...)
}

// checkPathPrefix accepts "" and /seg[/seg...] of unreserved characters
// (RFC 3986: letters, digits, "-", ".", "_", "~"), with no "." or ".."
// segment and outside the paths the HTTP handler serves itself.
func CheckHTTPPathPrefix(p string) error {
	if p == "" {
		return nil
	}
	if p[0] != '/' {
		return errors.New("must start with /")
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return errors.New("must not end with / or hold an empty segment")
		case ".", "..":
			return errors.New("must not hold a . or .. segment")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
				return fmt.Errorf("character %q: only letters, digits, -, ., _ and ~ may appear in a segment", c)
			}
		}
	}
	if first, _, _ := strings.Cut(p[1:], "/"); first == "v2alpha1" || first == "health" {
		return errors.New("must not be under /v2alpha1 or /health, which the sidecar serves itself")
	}
	return nil
}

func metaHeader(prefix, field string) string { return prefix + "meta-" + strings.ToLower(field) }

// lowerToken reports whether s is a non-empty RFC 9110 token without
// upper-case letters.
func lowerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
