package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// startRedis runs a private redis-server on a free port, for a test that
// kills it. redis-server needs a port number, so one is picked by binding :0
// and closing; if another process takes it first, redis-server exits and is
// started again on a new port. It counts as up once it answers PING on the
// port while still running, so a listener that is not ours is never taken
// for it.
func startRedis(t *testing.T) (addr string, kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed: apt-get install redis-server")
	}
	for attempt := 1; ; attempt++ {
		addr, kill, err := tryStartRedis(t, bin)
		if err == nil {
			return addr, kill
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
	}
}

// errPortTaken says the port picked for redis-server was taken before it
// bound it.
var errPortTaken = errors.New("port taken")

func tryStartRedis(t *testing.T, bin string) (string, func(), error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var out logSink
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var once sync.Once
	kill := func() { once.Do(func() { _ = cmd.Process.Kill(); <-exited }) }
	t.Cleanup(kill)
	deadline := time.Now().Add(10 * time.Second)
	for !redisPing(addr) {
		select {
		case <-exited:
			if strings.Contains(out.String(), "in use") {
				return "", nil, errPortTaken
			}
			return "", nil, fmt.Errorf("redis-server exited before serving:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("redis-server not answering PING on %s after 10s:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-exited: // what answered was not ours
		return "", nil, errPortTaken
	default:
	}
	return addr, kill, nil
}

// redisPing reports whether a Redis answers PING on addr.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return false
	}
	b := make([]byte, 7)
	n, _ := io.ReadFull(c, b)
	return string(b[:n]) == "+PONG\r\n"
}

// TestE2E_SidecarRedisDies kills the shared cache in the middle of a load:
// every check keeps being answered (from L1 or the control plane), none
// fails.
func TestE2E_SidecarRedisDies(t *testing.T) {
	redisAddr, killRedis := startRedis(t)
	srv := startServer(t)
	p := startProxy(t, srv.grpc,
		// A short TTL keeps the load going through L2 and upstream.
		"TALOS_PROXY_CACHE_TTL=50ms", "TALOS_PROXY_CACHE_REDIS_ENABLED=true", "TALOS_PROXY_CACHE_REDIS_ADDRS="+redisAddr, "TALOS_PROXY_CACHE_REDIS_SECRET="+e2eRedisSecret,
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
