package serve_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/config"
	"github.com/talos-project/talos/pkg/serve"
)

// startHTTP serves h on a listener capped at maxConns. The returned
// connStates follows what the server reports for each connection, so that a
// test can wait for the server's view instead of guessing at it.
func startHTTP(t *testing.T, maxConns int, h http.Handler) (*serve.Listener, *connStates) {
	t.Helper()
	ln, err := serve.Listen(context.Background(), "127.0.0.1:0", maxConns)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve.HTTPServer(h, ln, serve.HTTPTimeouts{}, nil)
	states := &connStates{m: map[string]http.ConnState{}}
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		hook(c, s)
		states.set(c.RemoteAddr().String(), s)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln, states
}

// connStates is the last state the server reported for each connection, by
// the client's address.
type connStates struct {
	mu sync.Mutex
	m  map[string]http.ConnState
}

func (cs *connStates) set(addr string, s http.ConnState) {
	cs.mu.Lock()
	cs.m[addr] = s
	cs.mu.Unlock()
}

// wait waits until the server has reported the client connection c in
// state s. The server marks a connection idle after it has written the
// response, so a client that has read the response may be ahead of it.
func (cs *connStates) wait(t *testing.T, c net.Conn, s http.ConnState) {
	t.Helper()
	addr := c.LocalAddr().String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs.mu.Lock()
		got, ok := cs.m[addr]
		cs.mu.Unlock()
		if ok && got == s {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server state of %s = %v (known %v), want %v", addr, got, ok, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitOpen waits until the listener counts n open connections.
func waitOpen(t *testing.T, ln *serve.Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ln.Stats().Open != n {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v, want %d open", ln.Stats(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

// idleConn opens a connection, makes one keep-alive request on it and
// leaves it idle, returning once the server counts it idle.
func idleConn(t *testing.T, addr string, states *connStates) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return leaveIdle(t, c, states)
}

// leaveIdle makes one keep-alive HTTP/1.1 request on c and leaves it idle,
// returning once the server counts it idle. c is closed when the test ends.
func leaveIdle(t *testing.T, c net.Conn, states *connStates) net.Conn {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request on a fresh connection: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	states.wait(t, c, http.StateIdle)
	return c
}

// waitClosed waits until the server closes c.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); !errors.Is(err, io.EOF) {
		t.Fatalf("read on a connection the server should have closed: %v, want EOF", err)
	}
}

func get(addr string) error {
	return getURL(&http.Transport{DisableKeepAlives: true}, "http://"+addr+"/")
}

// getURL makes one GET through tr and wants a 200.
func getURL(tr *http.Transport, url string) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// TestListener_IdleConnectionsGiveWay: with every slot held by idle
// connections, a new connection gets through, and the oldest idle one is
// closed to make room.
func TestListener_IdleConnectionsGiveWay(t *testing.T) {
	t.Parallel()
	ln, states := startHTTP(t, 4, okHandler)
	addr := ln.Addr().String()
	var idle []net.Conn
	for range 4 {
		idle = append(idle, idleConn(t, addr, states))
	}
	if err := get(addr); err != nil {
		t.Fatalf("request with every slot idle: %v", err)
	}
	waitClosed(t, idle[0])
	// The server closes the get's connection after the client has read the
	// response; once it has, there is one free slot. Fill it
	// and the rest with connections that never send anything: they are
	// idle too, and the oldest of them gives way.
	waitOpen(t, ln, 3)
	var silent []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	for _, c := range idle[1:] {
		waitClosed(t, c)
	}
	if err := get(addr); err != nil {
		t.Fatalf("request with every slot held by silent connections: %v", err)
	}
	waitClosed(t, silent[0])
	s := ln.Stats()
	if s.Open > 4 || s.Evicted != 5 || s.Refused != 0 {
		t.Errorf("stats = %+v, want open ≤ 4, 5 evicted, none refused", s)
	}
}

// TestListener_BusyConnectionsRefuseNewOnes: with every slot serving a
// request, a new connection is closed at once (not queued), and the slots
// come back when the requests end.
func TestListener_BusyConnectionsRefuseNewOnes(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	ln, _ := startHTTP(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	addr := ln.Addr().String()
	slow := make(chan error, 2)
	for range 2 {
		go func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + addr + "/slow")
			if err == nil {
				resp.Body.Close()
			}
			slow <- err
		}()
	}
	<-started
	<-started

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("a connection over the cap was answered or left waiting (%v), want it closed", err)
	}
	if s := ln.Stats(); s.Refused == 0 || s.Open != 2 {
		t.Errorf("stats = %+v, want refusals and 2 open", s)
	}

	close(release)
	for range 2 {
		if err := <-slow; err != nil {
			t.Fatalf("slow request: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for ln.Stats().Open != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v after every connection closed, want 0 open", ln.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := get(addr); err != nil {
		t.Fatalf("request once the slots are free: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestLimits_ConfigDefaultsMatch: the operator-facing defaults
// (config.Defaults) are the ones pkg/serve falls back to.
func TestLimits_ConfigDefaultsMatch(t *testing.T) {
	t.Parallel()
	d := config.Defaults()
	want := serve.Limits{}.WithDefaults()
	for _, l := range []config.Limits{d.Serve.Limits, d.Proxy.Limits.Limits} {
		if l.MaxConnections != want.MaxConnections || uint32(l.MaxConcurrentStreams) != want.MaxConcurrentStreams {
			t.Errorf("config defaults %+v, serve defaults %+v", l, want)
		}
	}
	if d.Proxy.Limits.MaxMessageBytes != want.MaxRecvMsgSize {
		t.Errorf("proxy.limits.max_message_bytes default %d, serve default %d", d.Proxy.Limits.MaxMessageBytes, want.MaxRecvMsgSize)
	}
}
