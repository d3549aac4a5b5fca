package main

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// stallProxy forwards TCP to a Redis until stall: from then on it holds
// every connection, old and new, open and silent, as a Redis that hangs (or
// a network that drops packets) does, so that each command waits for the
// client's timeout.
type stallProxy struct {
	addr    string
	ln      net.Listener
	target  string
	stalled atomic.Bool
	mu      sync.Mutex
	back    []net.Conn
	front   []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String(), ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range append(p.back, p.front...) {
			c.Close()
		}
	})
	return p
}

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.front = append(p.front, c)
		p.mu.Unlock()
		if p.stalled.Load() {
			go func() { _, _ = io.Copy(io.Discard, c) }()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.back = append(p.back, b)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(b, c)
			if p.stalled.Load() {
				_, _ = io.Copy(io.Discard, c)
			}
			c.Close()
			b.Close()
		}()
		go func() {
			_, _ = io.Copy(c, b)
			if !p.stalled.Load() {
				c.Close()
			}
		}()
	}
}

// stall cuts every connection off from Redis without closing it.
func (p *stallProxy) stall() {
	p.stalled.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.back {
		b.Close()
	}
}

func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// TestE2E_RateLimitRedisOutage: the rate-limit Redis hangs under a sidecar.
// Each failure mode behaves as configured, and once the circuit breaker is
// open checks no longer wait for the Redis timeout.
func TestE2E_RateLimitRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	redisAddr, _ := startRedis(t)
	srv := startServer(t)
	c := sdk(srv.http)
	const timeout = 400 * time.Millisecond
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{name: "fallback memory", env: []string{"TALOS_PROXY_RATE_LIMIT_FALLBACK=memory"}},
		{name: "fail open", env: []string{"TALOS_PROXY_RATE_LIMIT_FALLBACK=none", "TALOS_PROXY_RATE_LIMIT_FAILURE_MODE=open"}},
		{name: "fail closed", env: []string{"TALOS_PROXY_RATE_LIMIT_FALLBACK=none", "TALOS_PROXY_RATE_LIMIT_FAILURE_MODE=closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := newStallProxy(t, redisAddr)
			prefix := "talos-e2e:" + uuid.NewString() + ":"
			p := rateLimitedProxy(t, srv.grpc, append([]string{
				"TALOS_PROXY_RATE_LIMIT_BACKEND=redis", "TALOS_PROXY_RATE_LIMIT_REDIS_KEY_PREFIX=" + prefix + "rl:",
				"TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_ADDRS=" + link.addr, "TALOS_PROXY_CACHE_REDIS_SECRET=" + e2eRedisSecret,
				"TALOS_PROXY_CACHE_REDIS_KEY_PREFIX=" + prefix, "TALOS_PROXY_CACHE_REDIS_TIMEOUT=" + timeout.String(),
				"TALOS_PROXY_CHECK_TIMEOUT=5s",
			}, tc.env...)...)
			key, _ := issueLimitedKey(t, c, "3", "60s")
			var before []time.Duration
			for i := range 4 {
				start := time.Now()
				r := p.check(t, key)
				before = append(before, time.Since(start))
				if allowed(r) != (i < 3) {
					t.Fatalf("check %d before the outage = %v", i+1, r)
				}
			}
			// A key with a fresh budget, for the checks through the outage.
			fresh, _ := issueLimitedKey(t, c, "3", "60s")
			if r := p.check(t, fresh); !allowed(r) || clientHeader(r, "ratelimit") != `"default";r=2;t=20` {
				t.Fatalf("fresh key through Redis = %v", r)
			}
			for range 50 {
				start := time.Now()
				p.checkExt(t, fresh, map[string]string{"talos.cost": "0"})
				before = append(before, time.Since(start))
			}
			link.stall()

			allows, limited, unavailable := 0, 0, 0
			for i := 0; !strings.Contains(p.log.String(), "circuit open"); i++ {
				if i > 50 {
					t.Fatalf("no circuit open after %d checks through a hung Redis:\n%s", i, p.log.String())
				}
				r := p.check(t, key)
				switch {
				case allowed(r):
					allows++
					if clientHeader(r, "ratelimit-policy") != `"default";q=3;w=60` {
						t.Errorf("allow through the outage without RateLimit-Policy: %v", r)
					}
					if tc.name == "fail open" && clientHeader(r, "ratelimit") != "" {
						t.Errorf("fail open reports a RateLimit state it does not know: %v", r)
					}
				case deniedWith(r, http.StatusTooManyRequests):
					limited++
				case deniedWith(r, http.StatusServiceUnavailable):
					unavailable++
				default:
					t.Fatalf("check through the outage = %v", r)
				}
			}
			var after []time.Duration
			for range 100 {
				start := time.Now()
				r := p.check(t, key)
				after = append(after, time.Since(start))
				switch {
				case allowed(r):
					allows++
				case deniedWith(r, http.StatusTooManyRequests):
					limited++
				case deniedWith(r, http.StatusServiceUnavailable):
					unavailable++
				}
			}
			t.Logf("%s: check p99 %.2fms before the outage, %.2fms with the circuit open (Redis timeout %s); %d allowed, %d limited, %d unavailable",
				tc.name, ms(p99(before)), ms(p99(after)), timeout, allows, limited, unavailable)
			if p99(after) > timeout/4 {
				t.Errorf("p99 %s with the circuit open: checks still wait for the Redis timeout %s", p99(after), timeout)
			}
			switch tc.name {
			case "fallback memory":
				// The fallback is a budget of this sidecar's own: three more.
				if allows != 3 || unavailable != 0 {
					t.Errorf("fallback memory: %d allowed, %d unavailable, want 3 and 0", allows, unavailable)
				}
				if got := metric(t, p.metrics, "talos_ratelimit_decisions_total", `backend="memory"`, `result="limited"`); got < 1 {
					t.Errorf("fallback decisions limited = %v", got)
				}
			case "fail open":
				if limited != 0 || unavailable != 0 {
					t.Errorf("fail open: %d limited, %d unavailable", limited, unavailable)
				}
				if got := metric(t, p.metrics, "talos_ratelimit_decisions_total", `backend="redis"`, `result="error"`); got != float64(allows) {
					t.Errorf("error decisions = %v, want one per check through the outage (%d)", got, allows)
				}
			case "fail closed":
				if allows != 0 || limited != 0 {
					t.Errorf("fail closed: %d allowed, %d limited", allows, limited)
				}
			}
		})
	}
}
