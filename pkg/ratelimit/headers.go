package ratelimit

import (
	"strconv"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// The wire names both processes send (IETF draft-ietf-httpapi-ratelimit-headers).
const (
	HeaderPolicy     = "RateLimit-Policy"
	HeaderState      = "RateLimit"
	HeaderRetryAfter = "Retry-After"
	// PolicyName is the one policy name a key's limit is published under.
	PolicyName = `"default"`
)

// KeyOf is the limiter key of an API key: the tenant and the key ID, so that
// equal key IDs of two tenants never share a budget. Derived tokens count
// under their parent's key ID when their verdict carries a policy.
func KeyOf(tenant credential.Tenant, id credential.KeyID) string {
	return string(tenant) + "/" + string(id)
}

// PolicyValue renders p as a RateLimit-Policy value: "default";q=100;w=60.
// The window is in whole seconds, rounded up (the draft has no sub-second
// windows), at least 1.
func PolicyValue(p credential.RatePolicy) string {
	b := make([]byte, 0, 32)
	b = append(b, PolicyName...)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, p.Quota, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, ceilSeconds(p.Window), 10)
	return string(b)
}

// StateValue renders d as a RateLimit value: "default";r=42;t=17, where r is
// the units left and t the seconds, rounded up, until the budget is full
// again (for a refused request: until it may retry, at least 1).
func StateValue(d Decision) string {
	t := d.ResetAfter
	if !d.Allowed {
		t = d.RetryAfter
	}
	secs := ceilSeconds(t)
	if !d.Allowed && secs < 1 {
		secs = 1
	}
	r := d.Remaining
	if r < 0 || !d.Allowed {
		r = 0
	}
	b := make([]byte, 0, 32)
	b = append(b, PolicyName...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, r, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, secs, 10)
	return string(b)
}

// RetryAfterSeconds is the Retry-After value of a refused decision: whole
// seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int64 {
	if s := ceilSeconds(d); s > 1 {
		return s
	}
	return 1
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
