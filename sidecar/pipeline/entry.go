package pipeline

import (
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

// Entry is one cached verdict on a credential.
type Entry struct {
	Result credential.Result
	// Err is nil for a valid credential, else a verdict (*credential.Error).
	Err error
	// Fresh is when the entry stops being served as a hit.
	Fresh time.Time
	// Keep is when the entry stops being served at all: past Fresh it is
	// served only while the upstream is down (stale-if-error).
	Keep time.Time
	// Tag is the invalidation watermark when the verdict was fetched (see
	// invalidations).
	Tag int64
	// kid is the signing key that verified a locally verified JWT: the
	// verdict holds only while that key is still published.
	kid string
	// memo keeps the rendered allow of this verdict for extauthz.
	memo extauthz.Memo
}

// entryOverhead is the memory an entry costs beyond its variable-length
// fields: the Entry and Result structs, the cache key, and ristretto's own
// bookkeeping (store map, expiry buckets, admission counters). The bench
// memory scenario measured about 1.4 KB of RSS per cached key (bench/README.md).
const entryOverhead = 1024

// cost approximates the bytes an entry holds, for the memory budget.
func (e *Entry) cost() int64 {
	r := &e.Result
	n := entryOverhead + len(r.Tenant) + len(r.KeyID) + len(r.ActorID) + len(r.Metadata) + len(r.Issuer) + 24*len(r.AllowedCIDRs)
	for _, s := range r.Scopes {
		n += 16 + len(s)
	}
	for _, s := range r.Audiences {
		n += 16 + len(s)
	}
	for k, v := range r.Conditions {
		n += 32 + len(k) + len(v)
	}
	return int64(n)
}

// lifetimes are how long verdicts are cached.
type lifetimes struct {
	ttl, negative, stale time.Duration
}

// entryFor wraps an upstream verdict in an Entry: allows and final denials
// (revoked, expired) for ttl, capped at the key's expiry; NOT_FOUND and other
// denials for the negative TTL. It reports false for a verdict that must not
// be cached at all (rate limiting, a zero TTL).
func (l lifetimes) entryFor(res credential.Result, err error, now time.Time) (*Entry, bool) {
	var ttl time.Duration
	switch credential.KindOf(err) {
	case nil, credential.ErrRevoked, credential.ErrExpired:
		ttl = l.ttl
	case credential.ErrRateLimited:
		return nil, false
	default:
		ttl = l.negative
	}
	if ttl <= 0 {
		return nil, false
	}
	e := &Entry{Result: res, Err: err, Fresh: now.Add(ttl)}
	e.Keep = e.Fresh.Add(l.stale)
	if exp := res.ExpireTime; err == nil && !exp.IsZero() {
		if exp.Before(e.Fresh) {
			e.Fresh = exp
		}
		if exp.Before(e.Keep) {
			e.Keep = exp
		}
	}
	if !e.Fresh.After(now) {
		return nil, false
	}
	return e, true
}

// bound caps the times of an entry read from the shared cache at what this
// sidecar would have given it, so that a peer with a larger TTL or a clock
// ahead cannot make an entry outlive the tombstones that guard it.
func (l lifetimes) bound(e *Entry, now time.Time) {
	if limit := now.Add(max(l.ttl, l.negative)); e.Fresh.After(limit) {
		e.Fresh = limit
	}
	if limit := e.Fresh.Add(l.stale); e.Keep.After(limit) {
		e.Keep = limit
	}
}

// wireEntry is an Entry as stored in the shared cache: JSON, so that sidecars
// of different versions can read each other's entries (unknown fields are
// ignored, a missing field reads as its zero value).
type wireEntry struct {
	Type       credential.CredentialType `json:"t"`
	Tenant     credential.Tenant         `json:"n,omitempty"`
	KeyID      credential.KeyID          `json:"k,omitempty"`
	ActorID    string                    `json:"a,omitempty"`
	Scopes     []string                  `json:"s,omitempty"`
	Metadata   json.RawMessage           `json:"m,omitempty"`
	Status     credential.State          `json:"st,omitempty"`
	Visibility credential.Visibility     `json:"v,omitempty"`
	Expire     int64                     `json:"e,omitempty"` // unix ms; 0 never
	CIDRs      []netip.Prefix            `json:"c,omitempty"`
	Audiences  []string                  `json:"au,omitempty"`
	Issuer     string                    `json:"i,omitempty"`
	Conditions map[string]string         `json:"co,omitempty"`
	Quota      int64                     `json:"rq,omitempty"`
	WindowMs   int64                     `json:"rw,omitempty"`
	Unit       string                    `json:"ru,omitempty"`
	// The verdict: "" valid, else the sentinel's name.
	Kind    string `json:"x,omitempty"`
	Reason  string `json:"xr,omitempty"`
	Message string `json:"xm,omitempty"`
	Fresh   int64  `json:"f"` // unix ms
	Keep    int64  `json:"kp"`
	Tag     int64  `json:"g,omitempty"`
}

// verdictKinds are the sentinels a cached verdict may carry, by wire name.
var verdictKinds = map[string]error{
	"malformed":       credential.ErrMalformed,
	"not_found":       credential.ErrNotFound,
	"expired":         credential.ErrExpired,
	"revoked":         credential.ErrRevoked,
	"forbidden":       credential.ErrForbidden,
	"unauthenticated": credential.ErrUnauthenticated,
}

func kindName(err error) string {
	k := credential.KindOf(err)
	for name, s := range verdictKinds {
		if s == k {
			return name
		}
	}
	return ""
}

var errUnencodable = errors.New("pipeline: verdict cannot be shared")

func encodeEntry(e *Entry) ([]byte, error) {
	r := &e.Result
	w := wireEntry{
		Type: r.Type, Tenant: r.Tenant, KeyID: r.KeyID, ActorID: r.ActorID, Scopes: r.Scopes,
		Metadata: r.Metadata, Status: r.Status, Visibility: r.Visibility, CIDRs: r.AllowedCIDRs,
		Audiences: r.Audiences, Issuer: r.Issuer, Conditions: r.Conditions,
		Fresh: e.Fresh.UnixMilli(), Keep: e.Keep.UnixMilli(), Tag: e.Tag,
	}
	if !r.ExpireTime.IsZero() {
		w.Expire = r.ExpireTime.UnixMilli()
	}
	if rp := r.RatePolicy; rp != nil {
		w.Quota, w.WindowMs, w.Unit = rp.Quota, rp.Window.Milliseconds(), rp.Unit
	}
	if e.Err != nil {
		if w.Kind = kindName(e.Err); w.Kind == "" {
			return nil, errUnencodable
		}
		var ce *credential.Error
		if errors.As(e.Err, &ce) {
			w.Reason, w.Message = ce.Reason, ce.Message
		}
	}
	return json.Marshal(&w)
}

// decodeEntry reads a shared-cache entry (once the sealer has opened it);
// anything unreadable is a miss.
func decodeEntry(b []byte) (*Entry, bool) {
	var w wireEntry
	if json.Unmarshal(b, &w) != nil || w.Fresh == 0 {
		return nil, false
	}
	e := &Entry{
		Result: credential.Result{
			Type: w.Type, Tenant: w.Tenant, KeyID: w.KeyID, ActorID: w.ActorID, Scopes: w.Scopes,
			Metadata: w.Metadata, Status: w.Status, Visibility: w.Visibility, AllowedCIDRs: w.CIDRs,
			Audiences: w.Audiences, Issuer: w.Issuer, Conditions: w.Conditions,
		},
		Fresh: time.UnixMilli(w.Fresh),
		Keep:  time.UnixMilli(w.Keep),
		Tag:   w.Tag,
	}
	if w.Expire != 0 {
		e.Result.ExpireTime = time.UnixMilli(w.Expire)
	}
	if w.Quota != 0 {
		e.Result.RatePolicy = &credential.RatePolicy{Quota: w.Quota, Window: time.Duration(w.WindowMs) * time.Millisecond, Unit: w.Unit}
	}
	if w.Kind != "" {
		kind, ok := verdictKinds[w.Kind]
		if !ok {
			return nil, false
		}
		e.Err = &credential.Error{Kind: kind, Reason: w.Reason, Message: w.Message}
	} else if w.KeyID == "" || w.Type < credential.TypeIssued || w.Type > credential.TypeMacaroon {
		// An allow always names its key and how it was presented; one
		// that does not was not written by a sidecar.
		return nil, false
	}
	return e, true
}
