package main

import (
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangLink forwards connections to an upstream until Hang: from then on it
// keeps every connection open and accepts new ones, but forwards nothing in
// either direction. It stands for a control plane (or its database) that is
// hung rather than down: calls are neither answered nor refused.
type hangLink struct {
	addr  string
	hung  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	conns []net.Conn
	done  bool
	ln    net.Listener
}

func newHangLink(t *testing.T, upstream string) *hangLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &hangLink{addr: ln.Addr().String(), hung: make(chan struct{}), ln: ln}
	t.Cleanup(l.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !l.track(c) {
				return
			}
			select {
			case <-l.hung:
				continue // accepted, never answered
			default:
			}
			up, err := net.DialTimeout("tcp", upstream, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			if !l.track(up) {
				return
			}
			go l.pump(up, c)
			go l.pump(c, up)
		}
	}()
	return l
}

func (l *hangLink) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		c.Close()
		return false
	}
	l.conns = append(l.conns, c)
	return true
}

// pump copies src to dst until either closes; once the link hangs, whatever
// it reads is held back.
func (l *hangLink) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-l.hung:
				_, _ = io.Copy(io.Discard, src) // swallow until closed
				return
			default:
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (l *hangLink) hang() { l.once.Do(func() { close(l.hung) }) }

func (l *hangLink) close() {
	l.hang()
	l.ln.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns, l.done = nil, true
}

// TestE2E_SidecarHungControlPlane hangs the link to the control plane (it
// accepts, never answers) after the sidecar has cached some keys and their
// TTL has passed: Envoy gives ext_authz 250ms, so the cached allows must be
// served stale within that, not after the upstream timeout and its retries.
func TestE2E_SidecarHungControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	srv := startServer(t)
	link := newHangLink(t, srv.grpc)
	const ttl = time.Second
	p := startProxy(t, link.addr, "TALOS_PROXY_CACHE_TTL=1s", "TALOS_PROXY_STALE_IF_ERROR=5m")
	c := sdk(srv.http)
	var keys []string
	for range 8 {
		k, _ := issueKey(t, c, "read")
		keys = append(keys, k)
	}
	for _, k := range keys {
		if r := p.check(t, k); !allowed(r) {
			t.Fatalf("check before the hang = %v", r)
		}
	}
	cachedAt := time.Now()
	link.hang()
	time.Sleep(time.Until(cachedAt.Add(ttl + 100*time.Millisecond))) // the TTL passes; nothing to poll for

	const envoyTimeout = 250 * time.Millisecond
	var (
		mu        sync.Mutex
		latencies []time.Duration
		total     atomic.Int64
		inTime    atomic.Int64
	)
	stop := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; time.Now().Before(stop); i++ {
				start := time.Now()
				r, err := p.tryCheck(keys[i%len(keys)])
				took := time.Since(start)
				total.Add(1)
				if err == nil && allowed(r) && took <= envoyTimeout {
					inTime.Add(1)
				}
				mu.Lock()
				latencies = append(latencies, took)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(latencies)
	frac := float64(inTime.Load()) / float64(total.Load())
	t.Logf("during the hang: %d of %d valid checks (%.1f%%) allowed within %v; latency p50 %v, p99 %v, max %v",
		inTime.Load(), total.Load(), 100*frac, envoyTimeout,
		latencies[len(latencies)/2], latencies[len(latencies)*99/100], latencies[len(latencies)-1])
	if frac < 0.95 {
		t.Fatalf("only %.1f%% of valid checks were allowed within Envoy's %v while the control plane hung", 100*frac, envoyTimeout)
	}
	if got := metric(t, p.metrics, "talos_proxy_stale_served_total"); got == 0 {
		t.Fatal("no stale verdict counted: the hang was not exercised")
	}
}
