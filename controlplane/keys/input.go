package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/talos-project/talos/pkg/credential"
)

// Attributes are the caller-controlled attributes of a key, shared by issue,
// import, update and rotate.
type Attributes struct {
	Name         string
	Scopes       []string
	Metadata     json.RawMessage // a JSON object; nil means {}
	RatePolicy   *credential.RatePolicy
	AllowedCIDRs []netip.Prefix
}

// FieldSet says which attributes of an update or rotation apply; the others
// keep their stored values. The Field constants are its one-bit values.
type FieldSet uint8

const (
	FieldName FieldSet = 1 << iota
	FieldScopes
	FieldMetadata
	FieldRatePolicy
	FieldAllowedCIDRs
)

// Has reports whether every field of f is in the set.
func (s FieldSet) Has(f FieldSet) bool { return s&f == f }

// Patch is a partial update: the attributes named in Set replace the stored
// ones (an empty value clears the attribute).
type Patch struct {
	Attributes
	Set FieldSet
}

// IssueInput is a request to issue a new key.
type IssueInput struct {
	Attributes
	ActorID string
	// TTL is the lifetime; zero means the configured default.
	TTL        time.Duration
	Visibility credential.Visibility
	RequestID  string
}

// ImportInput is a request to import an existing raw key.
type ImportInput struct {
	IssueInput
	RawKey string
}

// RotateInput is a request to rotate an issued key: the new key inherits every
// attribute not in Set.
type RotateInput struct {
	Patch
	// Visibility zero inherits the old key's.
	Visibility credential.Visibility
	// Grace keeps the old key valid this long; zero revokes it at once.
	Grace time.Duration
}

func invalidf(format string, args ...any) *credential.Error {
	return credential.Invalid(fmt.Sprintf(format, args...))
}

func (s *Service) validateAttributes(a *Attributes, set FieldSet) error {
	if set.Has(FieldName) {
		if a.Name == "" {
			return invalidf("name is required")
		}
		if err := checkText("name", a.Name, MaxNameLen); err != nil {
			return err
		}
	}
	if set.Has(FieldScopes) {
		if len(a.Scopes) > MaxScopes {
			return invalidf("at most %d scopes are allowed", MaxScopes)
		}
		for _, sc := range a.Scopes {
			if sc == "" {
				return invalidf("scopes must not be empty strings")
			}
			if err := checkText("scope", sc, MaxScopeLen); err != nil {
				return err
			}
		}
	}
	if set.Has(FieldMetadata) {
		md, err := normalizeMetadata(a.Metadata)
		if err != nil {
			return err
		}
		a.Metadata = md
	}
	if set.Has(FieldRatePolicy) && a.RatePolicy != nil {
		rp := *a.RatePolicy // a copy: the caller's policy is not ours to change
		a.RatePolicy = &rp
		if rp.Quota <= 0 {
			return invalidf("rate_limit_policy.quota must be greater than 0")
		}
		if rp.Window < time.Second || rp.Window > MaxTTLCeiling {
			return invalidf("rate_limit_policy.window must be between 1s and %s", MaxTTLCeiling)
		}
		rp.Window = rp.Window.Truncate(time.Second)
		if rp.Unit == "" {
			rp.Unit = "requests"
		}
		if err := checkText("rate_limit_policy.unit", rp.Unit, 64); err != nil {
			return err
		}
	}
	if set.Has(FieldAllowedCIDRs) {
		if len(a.AllowedCIDRs) > MaxCIDRs {
			return invalidf("at most %d allowed_cidrs are allowed", MaxCIDRs)
		}
		a.AllowedCIDRs = slices.Clone(a.AllowedCIDRs)
		for i, p := range a.AllowedCIDRs {
			if !p.IsValid() {
				return invalidf("allowed_cidrs[%d] is not a valid CIDR", i)
			}
			a.AllowedCIDRs[i] = p.Masked()
		}
	}
	return nil
}

// checkText is the rule for every text field a request stores: at most max
// bytes of valid UTF-8 without NUL. NUL is valid UTF-8, and SQLite and MySQL
// store it, but PostgreSQL's text type refuses it; refusing it here gives one
// answer on every backend (and keeps it out of the headers a sidecar renders).
func checkText(field, v string, max int) error {
	if len(v) > max {
		return invalidf("%s must be at most %d bytes", field, max)
	}
	if !utf8.ValidString(v) {
		return invalidf("%s must be valid UTF-8", field)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return invalidf("%s must not contain NUL characters", field)
	}
	return nil
}

// hasEscapedNUL reports whether the compacted JSON text js has a \u0000
// escape in any string (keys included). Valid JSON has no raw control
// characters and backslashes only inside strings, so a scan that skips each
// escape's next byte is exact: in `\\u0000` the backslash is escaped and
// the text is not a NUL.
func hasEscapedNUL(js []byte) bool {
	for i := 0; i < len(js); i++ {
		if js[i] != '\\' || i+1 >= len(js) {
			continue
		}
		if js[i+1] == 'u' && i+6 <= len(js) && string(js[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped byte
	}
	return false
}

// normalizeMetadata checks that md is one JSON object within the size limit
// and returns it compacted; nil and {} become nil.
func normalizeMetadata(md json.RawMessage) (json.RawMessage, error) {
	if len(md) == 0 {
		return nil, nil
	}
	if len(md) > MaxMetadataBytes*2 {
		return nil, invalidf("metadata must be at most %d bytes", MaxMetadataBytes)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, md); err != nil {
		return nil, invalidf("metadata must be a JSON object")
	}
	out := buf.Bytes()
	if len(out) == 0 || out[0] != '{' {
		return nil, invalidf("metadata must be a JSON object")
	}
	if len(out) > MaxMetadataBytes {
		return nil, invalidf("metadata must be at most %d bytes", MaxMetadataBytes)
	}
	if !utf8.Valid(out) {
		return nil, invalidf("metadata must be valid UTF-8")
	}
	if hasEscapedNUL(out) {
		return nil, invalidf("metadata must not contain NUL characters")
	}
	if string(out) == "{}" {
		return nil, nil
	}
	return out, nil
}

func (s *Service) validateCreate(in *IssueInput) error {
	if err := s.validateAttributes(&in.Attributes, FieldName|FieldScopes|FieldMetadata|FieldRatePolicy|FieldAllowedCIDRs); err != nil {
		return err
	}
	if in.ActorID == "" {
		return invalidf("actor_id is required")
	}
	if err := checkText("actor_id", in.ActorID, MaxNameLen); err != nil {
		return err
	}
	if len(in.RequestID) > MaxRequestIDLen {
		return invalidf("request_id must be at most %d characters", MaxRequestIDLen)
	}
	if err := checkText("request_id", in.RequestID, MaxRequestIDLen); err != nil {
		return err
	}
	switch {
	case in.TTL == 0:
		in.TTL = s.opts.DefaultTTL
	case in.TTL < MinTTL || in.TTL > MaxTTLCeiling:
		return invalidf("ttl must be between 1s and %s", MaxTTLCeiling)
	case in.TTL > s.opts.MaxTTL:
		return invalidf("ttl exceeds the maximum of %s", s.opts.MaxTTL)
	}
	if in.Visibility == 0 {
		in.Visibility = credential.VisibilitySecret
	}
	return nil
}

// expiry returns the absolute expiry of a key created at now with ttl; zero
// ttl means never.
func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}
