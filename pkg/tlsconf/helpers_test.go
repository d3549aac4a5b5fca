package tlsconf_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for the Now options.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects a logger's text output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count returns how many lines contain s.
func (b *logBuffer) count(s string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// newTestLogger returns a logger writing into a buffer, and checks at the
// end of the test that no key material was logged.
func newTestLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	b := &logBuffer{}
	t.Cleanup(func() {
		if out := b.String(); strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "BEGIN") {
			t.Errorf("PEM material in the log:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// handshake is what the server side of one connection saw.
type handshake struct {
	err   error
	state tls.ConnectionState
}

// serveHandshakes accepts connections on a fresh port, completes a TLS
// handshake with cfg on each, writes one byte on success and reports each
// outcome.
func serveHandshakes(t *testing.T, cfg *tls.Config) (addr string, results <-chan handshake) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan handshake, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				err := tc.Handshake()
				if err == nil {
					_, err = tc.Write([]byte{'k'})
				}
				ch <- handshake{err: err, state: tc.ConnectionState()}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// dial completes a handshake with a serveHandshakes server and returns the
// client's error (including the server's rejection of a client
// certificate, which TLS 1.3 reports only on the first read), the client's
// view, and the server's view.
func dial(t *testing.T, addr string, results <-chan handshake, cfg *tls.Config) (error, tls.ConnectionState, handshake) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	var state tls.ConnectionState
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		state = c.ConnectionState()
		c.Close()
	}
	select {
	case h := <-results:
		return err, state, h
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no handshake")
		return nil, state, handshake{}
	}
}

// servedSerial dials a serveHandshakes server trusting pool and returns the
// serial number of the certificate it presented.
func servedSerial(t *testing.T, addr string, results <-chan handshake, pool *x509.CertPool) *big.Int {
	t.Helper()
	err, state, h := dial(t, addr, results, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil || h.err != nil {
		t.Fatalf("handshake: client %v, server %v", err, h.err)
	}
	return state.PeerCertificates[0].SerialNumber
}

// writeFile replaces path by a rename.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// trackingListener records accepted connections so a test can cut them,
// forcing clients to reconnect to the same, still bound, port.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTrackingListener(t *testing.T) *trackingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &trackingListener{Listener: ln}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// cut closes every connection accepted so far.
func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// eventually polls cond until it holds or 10 seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}
