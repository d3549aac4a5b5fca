// Package cachetest is the conformance suite every cache.Store must pass.
// A backend's test calls Run with a constructor; see pkg/cache/redis.
//
// It imports pkg/cache, pkg/credential and the standard library (testing
// included), and is imported by tests only.
package cachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/credential"
)

// Run runs the suite. newStore returns a fresh, empty store each time it is
// called: two stores it returns must not see each other's keys (a unique
// key prefix per call does), since the subtests run in parallel. Run closes
// every store at the end of its subtest; newStore may register more cleanup
// with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) cache.Store) {
	t.Helper()
	open := func(t *testing.T) cache.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		run  func(t *testing.T, s cache.Store)
	}{
		{"miss", testMiss},
		{"set then get", testSetGet},
		{"overwrite", testOverwrite},
		{"ttl expiry", testTTLExpiry},
		{"non-positive ttl", testNonPositiveTTL},
		{"delete many", testDeleteMany},
		{"binary keys and values", testBinary},
		{"values are copied", testCopies},
		{"cancelled context", testCancelled},
		{"concurrent use", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
	t.Run("separate stores are isolated", func(t *testing.T) {
		t.Parallel()
		a, b := open(t), open(t)
		k := Key("shared")
		mustSet(t, a, k, []byte("a"), time.Minute)
		mustMiss(t, b, k)
		mustSet(t, b, k, []byte("b"), time.Minute)
		mustGet(t, a, k, []byte("a"))
	})
	t.Run("close", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		k := Key("closed")
		mustSet(t, s, k, []byte("v"), time.Minute)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// After Close, calls must not panic and must not hit.
		if _, ok, err := s.Get(t.Context(), k); ok {
			t.Errorf("Get after Close = hit (err %v), want a miss or an error", err)
		}
		_ = s.Set(t.Context(), k, []byte("v"), time.Minute)
		_ = s.Delete(t.Context(), k)
		_ = s.Close()
	})
}

// Key returns a 32-byte binary key derived from name, shaped like the
// hashes callers use.
func Key(name string) string {
	h := sha256.Sum256([]byte(name))
	return string(h[:])
}

func mustSet(t *testing.T, s cache.Store, k string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(t.Context(), k, v, ttl); err != nil {
		t.Fatalf("Set(%x): %v", k, err)
	}
}

func mustGet(t *testing.T, s cache.Store, k string, want []byte) {
	t.Helper()
	got, ok, err := s.Get(t.Context(), k)
	if err != nil || !ok || !bytes.Equal(got, want) {
		t.Fatalf("Get(%x) = %q, %v, %v; want %q, true, nil", k, got, ok, err, want)
	}
}

func mustMiss(t *testing.T, s cache.Store, k string) {
	t.Helper()
	got, ok, err := s.Get(t.Context(), k)
	if err != nil || ok || got != nil {
		t.Fatalf("Get(%x) = %q, %v, %v; want nil, false, nil", k, got, ok, err)
	}
}

func testMiss(t *testing.T, s cache.Store) {
	mustMiss(t, s, Key("missing"))
	mustMiss(t, s, "")
}

func testSetGet(t *testing.T, s cache.Store) {
	k := Key("k")
	mustSet(t, s, k, []byte("value"), time.Minute)
	mustGet(t, s, k, []byte("value"))
	mustMiss(t, s, Key("other"))
}

func testOverwrite(t *testing.T, s cache.Store) {
	k := Key("k")
	mustSet(t, s, k, []byte("first"), time.Minute)
	mustSet(t, s, k, []byte("second, longer"), time.Minute)
	mustGet(t, s, k, []byte("second, longer"))
	mustSet(t, s, k, []byte("3"), time.Minute)
	mustGet(t, s, k, []byte("3"))
}

func testTTLExpiry(t *testing.T, s cache.Store) {
	short, long := Key("short"), Key("long")
	renewed := Key("renewed")
	mustSet(t, s, renewed, []byte("v"), 50*time.Millisecond)
	mustSet(t, s, short, []byte("v"), 50*time.Millisecond)
	mustSet(t, s, long, []byte("v"), time.Minute)
	// Overwriting replaces the TTL too.
	mustSet(t, s, renewed, []byte("v"), time.Minute)

	waitMiss(t, s, short)
	mustGet(t, s, long, []byte("v"))
	mustGet(t, s, renewed, []byte("v"))
}

// waitMiss polls until k misses, failing after 5s.
func waitMiss(t *testing.T, s cache.Store, k string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok, err := s.Get(t.Context(), k)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("an entry with a 50ms TTL is still there after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testNonPositiveTTL(t *testing.T, s cache.Store) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		k := Key(fmt.Sprint("ttl", ttl))
		err := s.Set(t.Context(), k, []byte("v"), ttl)
		if err != nil {
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Errorf("Set with ttl %v: got %v, want ErrInvalidArgument", ttl, err)
			}
			continue
		}
		// A store that accepts it must not keep the value forever; it may
		// as well not keep it at all.
		if _, ok, _ := s.Get(t.Context(), k); ok {
			t.Errorf("Set with ttl %v stored a value that never expires", ttl)
		}
	}
}

func testDeleteMany(t *testing.T, s cache.Store) {
	keys := make([]string, 6)
	for i := range keys {
		keys[i] = Key(fmt.Sprint("del", i))
		mustSet(t, s, keys[i], []byte{byte(i)}, time.Minute)
	}
	if err := s.Delete(t.Context(), keys[0], keys[2], keys[4], Key("never set")); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for i, k := range keys {
		if i%2 == 0 {
			mustMiss(t, s, k)
		} else {
			mustGet(t, s, k, []byte{byte(i)})
		}
	}
	if err := s.Delete(t.Context(), keys[1]); err != nil {
		t.Fatalf("Delete one: %v", err)
	}
	mustMiss(t, s, keys[1])
	if err := s.Delete(t.Context()); err != nil {
		t.Fatalf("Delete of no keys: %v", err)
	}
	if err := s.Delete(t.Context(), keys[1]); err != nil {
		t.Fatalf("Delete of a deleted key: %v", err)
	}
}

func testBinary(t *testing.T, s cache.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	cases := map[string][]byte{
		string(all):                           all,
		string(random):                        []byte("random key"),
		"\x00":                                {0},
		"\x00\x00":                            {0, 0},
		"\xff\xfe":                            []byte("\xff\xfe\x00\r\n$-1\r\n"),
		Key("empty value"):                    {},
		Key("large value"):                    bytes.Repeat([]byte{0, 1, 0xff}, 64<<10/3),
		Key("a") + "\r\n":                     []byte("crlf in key"),
		string(bytes.Repeat([]byte{'a'}, 43)): []byte("looks like an encoded key"),
	}
	for k, v := range cases {
		mustSet(t, s, k, v, time.Minute)
	}
	for k, v := range cases {
		mustGet(t, s, k, v)
	}
	// Keys that differ in one bit are different keys.
	flipped := []byte(Key("a"))
	flipped[31] ^= 1
	mustMiss(t, s, string(flipped))
}

func testCopies(t *testing.T, s cache.Store) {
	k := Key("copies")
	v := []byte("original")
	mustSet(t, s, k, v, time.Minute)
	copy(v, "mutated!")
	got, ok, err := s.Get(t.Context(), k)
	if err != nil || !ok || string(got) != "original" {
		t.Fatalf("Get after mutating the Set slice = %q, %v, %v; want original", got, ok, err)
	}
	copy(got, "mutated!")
	mustGet(t, s, k, []byte("original"))
}

func testCancelled(t *testing.T, s cache.Store) {
	k := Key("k")
	mustSet(t, s, k, []byte("v"), time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// A cancelled call may still have completed; it must not report
	// success it did not have, nor block.
	v, ok, err := s.Get(ctx, k)
	if ok && string(v) != "v" {
		t.Errorf("Get with a cancelled context = %q, want v or a miss", v)
	}
	errs := []error{err, s.Set(ctx, k, []byte("w"), time.Minute), s.Delete(ctx, k)}
	for _, err := range errs {
		if err != nil && !errors.Is(err, credential.ErrUnavailable) {
			t.Errorf("call with a cancelled context: got %v, want nil or ErrUnavailable", err)
		}
	}
}

func testConcurrent(t *testing.T, s cache.Store) {
	const goroutines, ops, nkeys = 8, 200, 16
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = Key(fmt.Sprint("concurrent", i))
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ctx := t.Context()
			for i := range ops {
				n := (g*ops + i) % nkeys
				k := keys[n]
				switch i % 5 {
				case 0:
					if err := s.Delete(ctx, k); err != nil {
						t.Errorf("Delete: %v", err)
					}
				case 1, 2:
					if err := s.Set(ctx, k, fmt.Appendf(nil, "%d:%d", n, g), time.Minute); err != nil {
						t.Errorf("Set: %v", err)
					}
				default:
					v, ok, err := s.Get(ctx, k)
					if err != nil {
						t.Errorf("Get: %v", err)
					}
					// A hit holds a value some goroutine wrote for this key.
					if ok && !bytes.HasPrefix(v, fmt.Appendf(nil, "%d:", n)) {
						t.Errorf("Get(key %d) = %q, written for another key", n, v)
					}
				}
			}
		})
	}
	wg.Wait()
}
