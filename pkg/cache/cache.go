// Package cache holds the caches of the sidecar's verdicts: the Store port,
// a shared byte cache (L2, implemented by pkg/cache/redis), its no-op
// implementation, and the conformance suite every Store must pass
// (pkg/cache/cachetest). The in-process L1 lives in pkg/cache/memory; it
// holds typed values and is not a Store.
//
// Keys are already hashes: callers derive them from (tenant, credential)
// with a keyed hash and never hand a credential to a cache. Values are opaque
// bytes the caller encodes.
//
// A cache is best-effort by contract: an entry may vanish at any time
// (eviction, expiry, a restart), and an error means the cache could not be
// reached. Callers treat both as a miss and never as a verdict.
//
// This package imports pkg/credential and the standard library only; it
// never imports controlplane, sidecar, extauthz or cmd.
package cache

import (
	"context"
	"time"
)

// Store is a shared byte cache with per-entry expiry.
//
// Implementations are safe for concurrent use. A returned error wraps
// credential.ErrUnavailable when the backend could not be reached (the
// context's error stays in the chain too), and Set may reject a TTL <= 0
// with credential.ErrInvalidArgument; either way callers treat the call as a
// miss. After Close, methods miss or fail with an error; they never panic.
type Store interface {
	// Get returns the value stored under key, or ok == false when there is
	// none (or it has expired). The returned slice is the caller's.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores val under key for ttl, replacing any previous value. ttl
	// must be positive. The store does not retain val.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes every key given; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Close releases the store's resources.
	Close() error
}

// Noop is a Store that stores nothing: every Get misses and every other
// method succeeds. The zero value is ready to use and safe for concurrent
// use. It stands in when caching is off.
type Noop struct{}

var _ Store = Noop{}

// Get always misses.
func (Noop) Get(context.Context, string) ([]byte, bool, error) { return nil, false, nil }

// Set discards the value.
func (Noop) Set(context.Context, string, []byte, time.Duration) error { return nil }

// Delete does nothing.
func (Noop) Delete(context.Context, ...string) error { return nil }

// Close does nothing.
func (Noop) Close() error { return nil }
