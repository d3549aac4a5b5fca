package sqlstore

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/talos-project/talos/pkg/credential"
)

// keyColumns are the api_keys columns a read decodes, in keyRow.dest order.
// The identity (nid, kind, key_id) is not among them: reads know it already,
// and list reads select key_id in front.
const keyColumns = `name, actor_id, scopes, metadata, status, visibility, ` +
	`rate_limit_quota, rate_limit_window_ms, rate_limit_unit, allowed_cidrs, ` +
	`revocation_reason, revocation_description, create_time, update_time, ` +
	`expire_time, last_used_time, request_id, token_prefix, version, ` +
	`secret_hash, superseded_by`

// emptyObject is how a nil Metadata is stored, and read back as nil.
const emptyObject = "{}"

// keyRow is one api_keys row as the driver scans it. Text columns scan into
// strings, which database/sql hands over from the driver without a copy.
type keyRow struct {
	id                         string
	name, actorID              string
	scopes, metadata, cidrs    string
	status, visibility, reason int64
	quota, windowMS            sql.NullInt64
	unit                       sql.NullString
	revocationDescription      string
	createTime, updateTime     int64
	expireTime, lastUsedTime   sql.NullInt64
	requestID                  sql.NullString
	prefix, version            string
	secretHash                 []byte
	supersededBy               sql.NullString
}

// dest returns the scan destinations in keyColumns order, preceded by key_id
// when withID is set.
func (r *keyRow) dest(withID bool) []any {
	d := make([]any, 0, 22)
	if withID {
		d = append(d, &r.id)
	}
	return append(d,
		&r.name, &r.actorID, &r.scopes, &r.metadata, &r.status, &r.visibility,
		&r.quota, &r.windowMS, &r.unit, &r.cidrs,
		&r.reason, &r.revocationDescription, &r.createTime, &r.updateTime,
		&r.expireTime, &r.lastUsedTime, &r.requestID, &r.prefix, &r.version,
		&r.secretHash, &r.supersededBy,
	)
}

// key decodes r into a Key of tenant and kind with ID id.
func (r *keyRow) key(tenant credential.Tenant, kind credential.Kind, id credential.KeyID) (credential.Key, error) {
	k := credential.Key{
		Tenant:                tenant,
		Kind:                  kind,
		ID:                    id,
		Name:                  r.name,
		ActorID:               r.actorID,
		Status:                credential.State(r.status),
		Visibility:            credential.Visibility(r.visibility),
		RevocationReason:      credential.RevocationReason(r.reason),
		RevocationDescription: r.revocationDescription,
		CreateTime:            fromMicros(r.createTime),
		UpdateTime:            fromMicros(r.updateTime),
		RequestID:             r.requestID.String,
		Prefix:                r.prefix,
		Version:               r.version,
		SecretHash:            r.secretHash,
		SupersededBy:          credential.KeyID(r.supersededBy.String),
	}
	if r.expireTime.Valid {
		k.ExpireTime = fromMicros(r.expireTime.Int64)
	}
	if r.lastUsedTime.Valid {
		k.LastUsedTime = fromMicros(r.lastUsedTime.Int64)
	}
	if r.quota.Valid {
		k.RatePolicy = &credential.RatePolicy{
			Quota:  r.quota.Int64,
			Window: time.Duration(r.windowMS.Int64) * time.Millisecond,
			Unit:   r.unit.String,
		}
	}
	if r.metadata != "" && r.metadata != emptyObject {
		k.Metadata = json.RawMessage(r.metadata)
	}
	var err error
	if k.Scopes, err = decodeStrings(r.scopes); err != nil {
		return k, fmt.Errorf("decode scopes: %w", err)
	}
	if k.AllowedCIDRs, err = decodePrefixes(r.cidrs); err != nil {
		return k, fmt.Errorf("decode allowed_cidrs: %w", err)
	}
	return k, nil
}

// keyValues returns k's column values in keyColumns order.
func keyValues(k *credential.Key) ([]any, error) {
	scopes, err := encodeStrings(k.Scopes)
	if err != nil {
		return nil, fmt.Errorf("encode scopes: %w", err)
	}
	cidrs, err := encodePrefixes(k.AllowedCIDRs)
	if err != nil {
		return nil, fmt.Errorf("encode allowed_cidrs: %w", err)
	}
	metadata := emptyObject
	if len(k.Metadata) > 0 {
		metadata = string(k.Metadata)
	}
	var quota, window, unit any
	if p := k.RatePolicy; p != nil {
		quota, window, unit = p.Quota, p.Window.Milliseconds(), p.Unit
	}
	var hash any
	if len(k.SecretHash) > 0 {
		hash = k.SecretHash
	}
	return []any{
		k.Name, k.ActorID, scopes, metadata, int64(k.Status), int64(k.Visibility),
		quota, window, unit, cidrs,
		int64(k.RevocationReason), k.RevocationDescription,
		toMicros(k.CreateTime), toMicros(k.UpdateTime),
		nullMicros(k.ExpireTime), nullMicros(k.LastUsedTime),
		nullString(k.RequestID), k.Prefix, k.Version,
		hash, nullString(string(k.SupersededBy)),
	}, nil
}

// toMicros is t as unix microseconds, rounded down: the precision every
// backend stores exactly.
func toMicros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros is the inverse of toMicros, in UTC.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros stores the zero time as NULL.
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// nullString stores the empty string as NULL, so that unique indexes ignore it.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// encodeStrings encodes ss as a JSON array, "[]" when empty. HTML escaping is
// off so that ordinary scopes stay on decodeStrings' fast path.
func encodeStrings(ss []string) (string, error) {
	if len(ss) == 0 {
		return "[]", nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ss); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func encodePrefixes(ps []netip.Prefix) (string, error) {
	if len(ps) == 0 {
		return "[]", nil
	}
	ss := make([]string, len(ps))
	for i, p := range ps {
		if !p.IsValid() {
			return "", errors.New("invalid prefix")
		}
		ss[i] = p.String()
	}
	return encodeStrings(ss)
}

func decodePrefixes(s string) ([]netip.Prefix, error) {
	ss, err := decodeStrings(s)
	if err != nil || len(ss) == 0 {
		return nil, err
	}
	ps := make([]netip.Prefix, len(ss))
	for i, v := range ss {
		if ps[i], err = netip.ParsePrefix(v); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// decodeStrings decodes a JSON array of strings; "", "[]" and "null" are
// nil. This runs on every verify, so arrays of plain strings (no escapes, no
// control characters, valid UTF-8: everything encodeStrings writes for
// ordinary scopes and CIDRs) are sliced out of s without copying or
// reflection. Anything else goes through encoding/json, which it matches.
func decodeStrings(s string) ([]string, error) {
	switch s {
	case "", "[]", "null":
		return nil, nil
	}
	if out, ok := decodePlainStrings(s); ok {
		return out, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// decodePlainStrings is decodeStrings' fast path. It reports false for
// anything it does not handle, valid or not.
func decodePlainStrings(s string) ([]string, bool) {
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '[' {
		return nil, false
	}
	out := make([]string, 0, strings.Count(s, ",")+1)
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		if skipSpace(s, i+1) != len(s) {
			return nil, false
		}
		return nil, true
	}
	for {
		if i == len(s) || s[i] != '"' {
			return nil, false
		}
		start := i + 1
		end := start
		for end < len(s) && s[end] != '"' {
			if c := s[end]; c == '\\' || c < 0x20 {
				return nil, false
			}
			end++
		}
		if end == len(s) || !utf8.ValidString(s[start:end]) {
			return nil, false
		}
		out = append(out, s[start:end])
		i = skipSpace(s, end+1)
		if i == len(s) {
			return nil, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case ']':
			if skipSpace(s, i+1) != len(s) {
				return nil, false
			}
			return out, true
		default:
			return nil, false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
