package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/ratelimit"
	"github.com/talos-project/talos/pkg/ratelimit/ratelimittest"
	"github.com/talos-project/talos/pkg/ratelimit/redis"
)

const addrEnv = "TALOS_TEST_REDIS_ADDR"

// newClient returns a client of the test Redis, skipping the test when none
// is configured.
func newClient(t testing.TB) *goredis.Client {
	t.Helper()
	addr := os.Getenv(addrEnv)
	if addr == "" {
		t.Skipf("%s is not set (e.g. 127.0.0.1:6379); skipping the Redis tests", addrEnv)
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// uniquePrefix returns a key prefix no other test (or test process) uses,
// and deletes its keys when the test ends.
func uniquePrefix(t testing.TB, c *goredis.Client) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "talos-test:rl:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

// TestConformance runs the suite on the real clock of Redis: a 1s window is
// one unit per 200ms, so the whole suite sleeps about 2.5s.
func TestConformance(t *testing.T) {
	ratelimittest.RunWith(t, func(t *testing.T) (ratelimit.Limiter, func(time.Duration)) {
		c := newClient(t)
		return redis.New(c, redis.Options{KeyPrefix: uniquePrefix(t, c), Timeout: 2 * time.Second}), time.Sleep
	}, ratelimittest.Options{Window: time.Second})
}

var perMinute = credential.RatePolicy{Quota: 10, Window: time.Minute}

// TestSharedBudget: two Limiters on two connections spend one budget per key.
func TestSharedBudget(t *testing.T) {
	c1, c2 := newClient(t), newClient(t)
	prefix := uniquePrefix(t, c1)
	l1 := redis.New(c1, redis.Options{KeyPrefix: prefix})
	l2 := redis.New(c2, redis.Options{KeyPrefix: prefix})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for _, l := range []*redis.Limiter{l1, l2} {
		wg.Go(func() {
			for range 15 {
				d, err := l.Allow(t.Context(), "k", perMinute, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != perMinute.Quota {
		t.Fatalf("two limiters allowed %d of 30, want %d in all", got, perMinute.Quota)
	}
	if d, err := l1.Allow(t.Context(), "other", perMinute, 1); err != nil || !d.Allowed {
		t.Fatalf("another key: %+v, %v; want a fresh budget", d, err)
	}
}

// TestNoScript: after SCRIPT FLUSH the server has forgotten the script; the
// next Allow still decides (EVALSHA fails with NOSCRIPT, EVAL loads it).
func TestNoScript(t *testing.T) {
	c := newClient(t)
	l := redis.New(c, redis.Options{KeyPrefix: uniquePrefix(t, c)})
	if _, err := l.Allow(t.Context(), "k", perMinute, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	d, err := l.Allow(t.Context(), "k", perMinute, 1)
	if err != nil || !d.Allowed || d.Remaining != 8 {
		t.Fatalf("after SCRIPT FLUSH: %+v, %v; want allowed with 8 remaining", d, err)
	}
}

// TestStoredState: the key is prefix+key, holds the TAT in microseconds on
// the server's clock, and expires one second after the budget is full.
func TestStoredState(t *testing.T) {
	c := newClient(t)
	prefix := uniquePrefix(t, c)
	l := redis.New(c, redis.Options{KeyPrefix: prefix})
	if _, err := l.Allow(t.Context(), "k", perMinute, 3); err != nil { // TAT = now + 18s
		t.Fatal(err)
	}
	now, err := c.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(t.Context(), prefix+"k").Result()
	if err != nil {
		t.Fatalf("GET %sk: %v", prefix, err)
	}
	us, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("stored %q, want an integer", v)
	}
	if ahead := time.Duration(us-now.UnixMicro()) * time.Microsecond; ahead <= 17*time.Second || ahead > 18*time.Second {
		t.Errorf("stored TAT is %v ahead of the server's now, want ~18s", ahead)
	}
	ttl, err := c.PTTL(t.Context(), prefix+"k").Result()
	if err != nil || ttl <= 18*time.Second || ttl > 19*time.Second {
		t.Errorf("PTTL = %v, %v; want ~19s (TAT - now + 1s)", ttl, err)
	}
	// Refunding the three units makes the budget full: no state left.
	if _, err := l.Allow(t.Context(), "k", perMinute, -3); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(t.Context(), prefix+"k").Result(); n != 0 {
		t.Errorf("key with a full budget still stored")
	}
}

// TestInvalidPolicyNoRoundTrip: a bad policy is refused before any command,
// so even a closed client answers ErrInvalidPolicy.
func TestInvalidPolicyNoRoundTrip(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	c.Close()
	l := redis.New(c, redis.Options{})
	if _, err := l.Allow(t.Context(), "k", credential.RatePolicy{Quota: 1}, 1); !errors.Is(err, ratelimit.ErrInvalidPolicy) {
		t.Fatalf("err = %v, want ErrInvalidPolicy", err)
	}
	if _, err := l.Allow(t.Context(), "k", perMinute, 1); err == nil || errors.Is(err, ratelimit.ErrInvalidPolicy) {
		t.Fatalf("closed client: err = %v, want the client's error", err)
	}
}

// TestTimeout: Options.Timeout bounds a call to a server that accepts and
// never answers (go-redis reports the deadline as an i/o timeout).
func TestTimeout(t *testing.T) {
	ln := listenSilent(t)
	sc := goredis.NewClient(&goredis.Options{Addr: ln, MaxRetries: -1, ReadTimeout: -1, WriteTimeout: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { sc.Close() })
	l := redis.New(sc, redis.Options{Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := l.Allow(t.Context(), "k", perMinute, 1)
	if err == nil {
		t.Fatal("Allow succeeded against a server that never answers")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Allow took %v with a 100ms timeout", el)
	}
}

func BenchmarkAllow(b *testing.B) {
	c := newClient(b)
	l := redis.New(c, redis.Options{KeyPrefix: uniquePrefix(b, c)})
	p := credential.RatePolicy{Quota: 1 << 40, Window: 1 << 50}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Allow(context.Background(), "k", p, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
