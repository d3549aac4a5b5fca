package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/talos-project/talos/pkg/cache"
	"github.com/talos-project/talos/pkg/cache/cachetest"
	"github.com/talos-project/talos/pkg/cache/redis"
	"github.com/talos-project/talos/pkg/credential"
)

const addrEnv = "TALOS_TEST_REDIS_ADDR"

// redisAddr returns the address of the test Redis, skipping the test when
// none is configured.
func redisAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv(addrEnv)
	if addr == "" {
		t.Skipf("%s is not set (e.g. 127.0.0.1:6379); skipping the Redis tests", addrEnv)
	}
	return addr
}

// uniquePrefix returns a key prefix no other test (or test process) uses,
// and deletes its keys when the test ends.
func uniquePrefix(t *testing.T, addr string) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "talos-test:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func newTestStore(t *testing.T) *redis.Store {
	t.Helper()
	addr := redisAddr(t)
	s, err := redis.New(redis.Options{
		Addrs:     []string{addr},
		Timeout:   2 * time.Second,
		KeyPrefix: uniquePrefix(t, addr),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestStore_Conformance(t *testing.T) {
	t.Parallel()
	redisAddr(t)
	cachetest.Run(t, func(t *testing.T) cache.Store { return newTestStore(t) })
}

func TestStore_Ping(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// TestStore_KeyLayout pins the stored form: prefix + base64url(key), with
// a millisecond expiry.
func TestStore_KeyLayout(t *testing.T) {
	t.Parallel()
	addr := redisAddr(t)
	raw := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = raw.Close() })
	prefix := uniquePrefix(t, addr)
	s := redis.NewFromClient(goredis.NewClient(&goredis.Options{Addr: addr}), prefix)
	t.Cleanup(func() { _ = s.Close() })

	k := cachetest.Key("layout")
	if err := s.Set(t.Context(), k, []byte("v"), 1500*time.Millisecond); err != nil {
		t.Fatalf("Set: %v", err)
	}
	stored := prefix + base64.RawURLEncoding.EncodeToString([]byte(k))
	got, err := raw.Get(t.Context(), stored).Result()
	if err != nil || got != "v" {
		t.Fatalf("GET %q = %q, %v; want v", stored, got, err)
	}
	ttl, err := raw.PTTL(t.Context(), stored).Result()
	if err != nil || ttl <= 0 || ttl > 1500*time.Millisecond {
		t.Errorf("PTTL = %v, %v; want in (0, 1.5s]", ttl, err)
	}
}

func TestNew_Invalid(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]redis.Options{
		"no address":       {},
		"negative timeout": {Addrs: []string{"127.0.0.1:6379"}, Timeout: -time.Second},
		"cluster DB":       {Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, DB: 1},
	} {
		if _, err := redis.New(o); !errors.Is(err, credential.ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want ErrInvalidArgument", name, err)
		}
	}
}

// closedAddr returns an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// blackHoleAddr returns an address that accepts connections and never
// answers, like a hung Redis.
func blackHoleAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestStore_Down checks that an unreachable Redis makes every call fail
// with ErrUnavailable within Timeout, well before the caller's deadline.
func TestStore_Down(t *testing.T) {
	t.Parallel()
	for name, addrs := range map[string]func(*testing.T) []string{
		"closed port": func(t *testing.T) []string { return []string{closedAddr(t)} },
		"hung server": func(t *testing.T) []string { return []string{blackHoleAddr(t)} },
		"cluster":     func(t *testing.T) []string { return []string{closedAddr(t), closedAddr(t)} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := redis.New(redis.Options{Addrs: addrs(t), Timeout: 100 * time.Millisecond, KeyPrefix: "p:"})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			k := cachetest.Key("k")
			_, ok, err := s.Get(ctx, k)
			if ok || !errors.Is(err, credential.ErrUnavailable) {
				t.Errorf("Get = %v, %v; want a miss and ErrUnavailable", ok, err)
			}
			for op, err := range map[string]error{
				"Set":    s.Set(ctx, k, []byte("v"), time.Minute),
				"Delete": s.Delete(ctx, k, cachetest.Key("k2")),
				"Ping":   s.Ping(ctx),
			} {
				if !errors.Is(err, credential.ErrUnavailable) {
					t.Errorf("%s = %v, want ErrUnavailable", op, err)
				}
			}
			// Timeout, not the caller's 10s deadline, ended the calls.
			if ctx.Err() != nil {
				t.Errorf("the calls ran into the caller's deadline: %v", ctx.Err())
			}
		})
	}
}

func TestStore_CallerDeadline(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	_, ok, err := s.Get(ctx, cachetest.Key("k"))
	if ok || !errors.Is(err, credential.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get past the deadline = %v, %v; want ErrUnavailable wrapping context.DeadlineExceeded", ok, err)
	}
}
