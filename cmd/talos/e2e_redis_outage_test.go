package main

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// startRedis runs a private redis-server on a free port, for a test that
// kills it.
func startRedis(t *testing.T) (addr string, kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed: apt-get install redis-server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(kill)
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	eventually(t, "redis-server accepting connections", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, kill
}

// TestE2E_SidecarRedisDies kills the shared cache in the middle of a load:
// every check keeps being answered (from L1 or the control plane), none
// fails.
func TestE2E_SidecarRedisDies(t *testing.T) {
	redisAddr, killRedis := startRedis(t)
	srv := startServer(t)
	p := startProxy(t, srv.grpc,
		// A short TTL keeps the load going through L2 and upstream.
		"TALOS_PROXY_CACHE_TTL=50ms", "TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_ADDRS="+redisAddr,
		"TALOS_PROXY_CACHE_REDIS_TIMEOUT=100ms", "TALOS_PROXY_CACHE_REDIS_KEY_PREFIX=talos-e2e:"+uuid.NewString()+":",
	)
	c := sdk(srv.http)
	var keys []string
	for range 8 {
		k, _ := issueKey(t, c, "read")
		keys = append(keys, k)
	}

	var (
		checks, failures atomic.Int64
		killed           atomic.Bool
		afterKill        atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for w := range 4 {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				r, err := p.tryCheck(keys[i%len(keys)])
				checks.Add(1)
				if err != nil || !allowed(r) {
					failures.Add(1)
				}
				if killed.Load() {
					afterKill.Add(1)
				}
			}
		})
	}
	eventually(t, "load through redis", 20*time.Second, func() bool {
		return metric(t, p.metrics, "talos_proxy_cache_lookups_total", `layer="redis"`, `result="hit"`) > 0 && checks.Load() > 200
	})
	killRedis()
	killed.Store(true)
	// The load runs on until the dead Redis has been asked (a lookup the
	// L1 did not answer), and for 400 checks at least.
	eventually(t, "checks through the dead Redis", 20*time.Second, func() bool {
		return afterKill.Load() >= 400 && metric(t, p.metrics, "talos_proxy_cache_lookups_total", `layer="redis"`, `result="error"`) > 0
	})
	cancel()
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d checks failed around a Redis crash", f, checks.Load())
	}
	t.Logf("%d checks, %d after the crash, 0 failures", checks.Load(), afterKill.Load())
}
