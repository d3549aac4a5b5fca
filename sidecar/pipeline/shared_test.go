package pipeline_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/cache/redis"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/sidecar/pipeline"
)

// mapStore is an in-memory cache.Store whose contents a test can read and
// tamper with, standing for a Redis anyone on its network can reach.
type mapStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

var _ cache.Store = (*mapStore)(nil)

func newMapStore() *mapStore { return &mapStore{m: map[string][]byte{}} }

func (s *mapStore) Get(_ context.Context, k string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return bytes.Clone(v), ok, nil
}

func (s *mapStore) Set(_ context.Context, k string, v []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = bytes.Clone(v)
	return nil
}

func (s *mapStore) Delete(_ context.Context, ks ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range ks {
		delete(s.m, k)
	}
	return nil
}

func (s *mapStore) Close() error { return nil }

func (s *mapStore) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

func (s *mapStore) put(k string, v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
}

func (s *mapStore) get(k string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.m[k])
}

// oldCacheKey is the key a verdict on cred was stored under before the
// shared cache was keyed: computable by anyone from the credential alone.
func oldCacheKey(cred string) string {
	k := apikey.CacheKey(credential.DefaultTenant, cred)
	return string(k[:])
}

// plantedAllow is a verdict a writer without the secret would plant: a valid
// imported key with admin scopes, fresh for an hour, in the entry format
// the shared cache used before entries were sealed.
func plantedAllow(t *testing.T) []byte {
	t.Helper()
	now := time.Now()
	b, err := json.Marshal(map[string]any{
		"t": credential.TypeImported, "n": credential.DefaultTenant, "k": "planted", "a": "attacker",
		"s": []string{"admin"}, "st": credential.StateActive,
		"f": now.Add(time.Hour).UnixMilli(), "kp": now.Add(2 * time.Hour).UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSharedCacheNeedsASecret(t *testing.T) {
	for _, secret := range [][]byte{nil, []byte("too-short")} {
		if _, err := pipeline.New(newUpstream(), pipeline.Options{Shared: newMapStore(), SharedSecret: secret}); err == nil {
			t.Fatalf("New with a shared cache and secret %q: no error", secret)
		} else if !strings.Contains(err.Error(), "proxy.cache.redis.secret") {
			t.Fatalf("error %q does not name the setting", err)
		}
	}
}

// TestSharedCachePlantedEntryIsNotServed: whoever can write to the shared
// Redis, without the sidecars' secret, cannot make a sidecar allow a
// credential nobody issued: neither under the key the old scheme derived
// from the credential alone, nor by overwriting an entry it found there.
func TestSharedCachePlantedEntryIsNotServed(t *testing.T) {
	addr := os.Getenv("TALOS_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("TALOS_TEST_REDIS_ADDR is not set")
	}
	prefix := "talos-test:" + uuid.NewString() + ":"
	shared, err := redis.New(redis.Options{Addrs: []string{addr}, Timeout: time.Second, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() })
	attacker := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() {
		ctx := context.Background()
		if ks, err := attacker.Keys(ctx, prefix+"*").Result(); err == nil && len(ks) > 0 {
			attacker.Del(ctx, ks...)
		}
		attacker.Close()
	})
	ctx := t.Context()
	up := newUpstream() // has issued nothing: every credential is NOT_FOUND
	opts := pipeline.Options{Shared: shared, SharedSecret: testSecret, NegativeTTL: time.Minute}

	// 1. Planted under the key anyone can compute from the credential.
	const forged = "nobody-issued-this-credential"
	redisKey := prefix + base64.RawURLEncoding.EncodeToString([]byte(oldCacheKey(forged)))
	if err := attacker.Set(ctx, redisKey, plantedAllow(t), time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, up, opts)
	if v := authorize(p, presented(forged)); v.Err == nil || !errors.Is(v.Err, credential.ErrNotFound) {
		t.Fatalf("a credential nobody issued, planted in Redis: %+v, want NOT_FOUND", v)
	}
	if s := p.Stats(); s.L2Hits != 0 || s.UpstreamCalls != 1 {
		t.Fatalf("stats = %+v, want no L2 hit and the upstream asked", s)
	}

	// 2. Overwriting entries the sidecars wrote: the attacker sees the key
	// names (not which credential they belong to) and replaces their values
	// with a plain allow and with garbage shaped like a sealed entry.
	const unknown = "another-unknown-credential"
	authorize(p, presented(unknown)) // caches NOT_FOUND in Redis
	ks, err := attacker.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	ks = slices.DeleteFunc(ks, func(k string) bool { return k == redisKey })
	if len(ks) != 2 {
		t.Fatalf("Redis keys written by the sidecar: %q, want 2", ks)
	}
	sealedShape := append([]byte{1}, bytes.Repeat([]byte{0xA5}, 24+16+len(plantedAllow(t)))...)
	for i, forgery := range [][]byte{plantedAllow(t), sealedShape} {
		for _, k := range ks {
			if err := attacker.Set(ctx, k, forgery, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}
		q := newPipeline(t, up, opts) // a sidecar with nothing in L1
		for _, cred := range []string{forged, unknown} {
			if v := authorize(q, presented(cred)); !errors.Is(v.Err, credential.ErrNotFound) {
				t.Fatalf("forgery %d over an existing entry, %s: %+v, want NOT_FOUND", i, cred, v)
			}
		}
		if s := q.Stats(); s.L2Hits != 0 || s.L2Rejected != 2 {
			t.Fatalf("forgery %d: stats = %+v, want 2 entries rejected and no L2 hit", i, s)
		}
	}
}

// TestSharedCacheKeyIsKeyed: the shared cache's key of a credential cannot
// be computed from the credential alone, and its entries do not show the
// verdict in clear (an imported key's ID is an unkeyed hash of the key).
func TestSharedCacheKeyIsKeyed(t *testing.T) {
	const cred = "a-low-entropy-imported-key"
	res := valid("imported-key-id-0123456789")
	res.ActorID = "actor-name-visible-in-clear"
	up := newUpstream()
	up.set(cred, res, nil)

	storedKey := func(secret []byte) (string, []byte) {
		st := newMapStore()
		authorize(newPipeline(t, up, pipeline.Options{Shared: st, SharedSecret: secret}), presented(cred))
		ks := st.keys()
		if len(ks) != 1 {
			t.Fatalf("keys = %d, want 1", len(ks))
		}
		return ks[0], st.get(ks[0])
	}
	k1, v1 := storedKey(testSecret)
	if k1 == oldCacheKey(cred) {
		t.Fatal("the shared-cache key is the unkeyed hash of the credential")
	}
	if again, _ := storedKey(testSecret); again != k1 {
		t.Fatal("two sidecars with one secret store a credential under different keys")
	}
	other := bytes.Clone(testSecret)
	other[0] ^= 1
	if k2, _ := storedKey(other); k2 == k1 {
		t.Fatal("the shared-cache key does not depend on the secret")
	}
	for _, clear := range []string{string(res.KeyID), res.ActorID, `"k"`} {
		if bytes.Contains(v1, []byte(clear)) {
			t.Fatalf("the stored entry shows %q in clear", clear)
		}
	}
}

// TestSharedCacheTamperedEntryIsAMiss: an entry altered in Redis, cut
// short, or moved to another credential's key is a miss (counted as
// rejected), never a verdict.
func TestSharedCacheTamperedEntryIsAMiss(t *testing.T) {
	up := newUpstream()
	up.set("key-one", valid("k1"), nil)
	up.set("key-two", valid("k2"), &credential.Error{Kind: credential.ErrRevoked, Reason: "API_KEY_REVOKED"})

	fill := func() (*mapStore, map[string]string) {
		st := newMapStore()
		writer := newPipeline(t, up, pipeline.Options{Shared: st, SharedSecret: testSecret})
		keyOf := map[string]string{}
		for _, cred := range []string{"key-one", "key-two"} {
			before := st.keys()
			authorize(writer, presented(cred))
			for _, k := range st.keys() {
				if !slices.Contains(before, k) {
					keyOf[cred] = k
				}
			}
		}
		return st, keyOf
	}
	// The untouched entries are hits for another sidecar.
	st, _ := fill()
	reader := newPipeline(t, up, pipeline.Options{Shared: st, SharedSecret: testSecret})
	calls := up.calls.Load()
	if v := authorize(reader, presented("key-one")); v.Err != nil || v.Cache != extauthz.CacheHit {
		t.Fatalf("untouched entry: %+v", v)
	}
	if up.calls.Load() != calls {
		t.Fatal("an untouched entry went upstream")
	}

	tamper := map[string]func(st *mapStore, keyOf map[string]string){
		"first byte flipped": func(st *mapStore, k map[string]string) { flip(st, k["key-one"], 0) },
		"nonce byte flipped": func(st *mapStore, k map[string]string) { flip(st, k["key-one"], 5) },
		"body byte flipped":  func(st *mapStore, k map[string]string) { flip(st, k["key-one"], 40) },
		"tag byte flipped":   func(st *mapStore, k map[string]string) { flip(st, k["key-one"], -1) },
		"truncated": func(st *mapStore, k map[string]string) {
			v := st.get(k["key-one"])
			st.put(k["key-one"], v[:len(v)-1])
		},
		"empty": func(st *mapStore, k map[string]string) { st.put(k["key-one"], nil) },
		"swapped with another key's entry": func(st *mapStore, k map[string]string) {
			a, b := st.get(k["key-one"]), st.get(k["key-two"])
			st.put(k["key-one"], b)
			st.put(k["key-two"], a)
		},
	}
	for name, f := range tamper {
		t.Run(name, func(t *testing.T) {
			st, keyOf := fill()
			f(st, keyOf)
			reader := newPipeline(t, up, pipeline.Options{Shared: st, SharedSecret: testSecret})
			v := authorize(reader, presented("key-one"))
			if v.Err != nil || v.Cache != extauthz.CacheMiss {
				t.Fatalf("key-one after tampering: %+v, want the upstream's allow (MISS)", v)
			}
			v = authorize(reader, presented("key-two"))
			if !errors.Is(v.Err, credential.ErrRevoked) {
				t.Fatalf("key-two after tampering: %+v, want REVOKED", v)
			}
			if s := reader.Stats(); s.L2Rejected == 0 || s.UpstreamCalls == 0 {
				t.Fatalf("stats = %+v, want the tampered entry rejected and the upstream asked", s)
			}
		})
	}
}

func flip(st *mapStore, k string, i int) {
	v := st.get(k)
	if i < 0 {
		i += len(v)
	}
	v[i] ^= 0x01
	st.put(k, v)
}

// TestHungUpstreamServesSharedStale: a sidecar with nothing in L1 answers a
// check from the stale entry another sidecar put in the shared cache, once
// the budget passes while the control plane hangs.
func TestHungUpstreamServesSharedStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMapStore()
		up := newHungUpstream()
		up.set("key-one", valid("k1"), nil)
		opts := pipeline.Options{TTL: 10 * time.Second, StaleIfError: time.Minute, CheckTimeout: budget, Shared: st, SharedSecret: testSecret}
		authorize(newPipeline(t, up, opts), presented("key-one"))
		time.Sleep(11 * time.Second)
		up.hung.Store(true)

		b := newPipeline(t, up, opts)
		start := time.Now()
		v := b.Authorize(t.Context(), presented("key-one"))
		if took := time.Since(start); v.Err != nil || v.Cache != extauthz.CacheStale || took != budget {
			t.Fatalf("from the shared cache during the hang: %+v after %v, want STALE after %v", v, took, budget)
		}
		close(up.release)
	})
}

// gatedStore is a mapStore whose Gets wait for open once armed.
type gatedStore struct {
	*mapStore
	armed   atomic.Bool
	reading chan struct{} // one receive per gated Get, when it starts
	open    chan struct{}
}

func (s *gatedStore) Get(ctx context.Context, k string) ([]byte, bool, error) {
	if s.armed.Load() {
		s.reading <- struct{}{}
		<-s.open
	}
	return s.mapStore.Get(ctx, k)
}

// TestNoCacheCheckNeverJoinsACachedRead: a check made while the invalidation
// stream is not current must not be answered from a cache. It joined the
// shared call of an earlier check of the same credential, made while the
// stream was current, and took that call's answer: a shared-cache hit, which
// may predate a revocation the sidecar never heard of.
func TestNoCacheCheckNeverJoinsACachedRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.set("key-one", valid("k1"), nil)
		store := &gatedStore{mapStore: newMapStore(), reading: make(chan struct{}), open: make(chan struct{})}
		secret := []byte(strings.Repeat("s", pipeline.MinSharedSecret))
		// A peer sidecar caches the allow in the shared store.
		peer := newPipeline(t, up, pipeline.Options{Shared: store, SharedSecret: secret})
		authorize(peer, presented("key-one"))
		up.set("key-one", credential.Result{}, credential.ErrRevoked) // revoked; this sidecar missed it

		p := newPipeline(t, up, pipeline.Options{Shared: store, SharedSecret: secret})
		var fresh atomic.Bool
		fresh.Store(true)
		p.UseStream(fresh.Load)
		store.armed.Store(true)
		first := authorizeAsync(p, presented("key-one"))
		<-store.reading // the first check's shared call reads the store
		fresh.Store(false)
		second := authorizeAsync(p, presented("key-one"))
		synctest.Wait() // the second check joins, or makes its own call
		store.armed.Store(false)
		close(store.open)
		<-first
		if v := <-second; v.Err == nil || v.Cache == extauthz.CacheHit {
			t.Fatalf("check while the stream is not current: %+v, want the control plane's verdict (revoked)", v)
		}
	})
}
