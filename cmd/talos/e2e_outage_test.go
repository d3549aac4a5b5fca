package main

import (
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards connections to an upstream; Stop cuts every connection
// and refuses new ones, Start listens again on the same address. It stands
// for a database that disappears and comes back.
type tcpProxy struct {
	upstream string
	addr     string
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, upstream string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{upstream: upstream, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close(); c.Close() }()
			go func() { _, _ = io.Copy(c, up); up.Close(); c.Close() }()
		}
	}()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// TestE2E_DatabaseOutage cuts the control plane off from its database
// (PostgreSQL, MySQL): calls answer 503 (or 504) with the AIP-193 body in
// bounded time, /health/ready turns 503, and both recover by themselves when
// the database is back.
func TestE2E_DatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	ran := false
	if dsn := os.Getenv("TALOS_TEST_POSTGRES_DSN"); dsn != "" {
		ran = true
		t.Run("postgres", func(t *testing.T) {
			u, err := url.Parse(postgresSchemaDSN(t, dsn))
			if err != nil {
				t.Fatal(err)
			}
			proxy := newTCPProxy(t, u.Host)
			u.Host = proxy.addr
			q := u.Query()
			q.Set("connect_timeout", "2")
			u.RawQuery = q.Encode()
			testOutage(t, proxy, u.String())
		})
	}
	if dsn := os.Getenv("TALOS_TEST_MYSQL_DSN"); dsn != "" {
		ran = true
		t.Run("mysql", func(t *testing.T) {
			u, err := url.Parse(mysqlDatabaseDSN(t, dsn))
			if err != nil {
				t.Fatal(err)
			}
			proxy := newTCPProxy(t, u.Host)
			u.Host = proxy.addr
			testOutage(t, proxy, u.String())
		})
	}
	if !ran {
		t.Skip("neither TALOS_TEST_POSTGRES_DSN nor TALOS_TEST_MYSQL_DSN is set")
	}
}

func testOutage(t *testing.T, proxy *tcpProxy, dsn string) {
	srv := startServer(t, "TALOS_DB_DSN="+dsn, "TALOS_DB_AUTO_MIGRATE=true")
	issue := func() (int, string) {
		code, body := do(t, "POST", srv.http+"/v2alpha1/admin/issuedApiKeys", jsonBody(map[string]string{"name": "n", "actor_id": "a"}))
		return code, string(body)
	}
	if code, body := issue(); code != 201 {
		t.Fatalf("issue with the database up: %d %s", code, body)
	}
	proxy.stop()
	start := time.Now()
	code, body := issue()
	if (code != 503 && code != 504) || !strings.Contains(body, `"details"`) {
		t.Fatalf("issue with the database gone: %d %s, want 503/504 with an AIP-193 body", code, body)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the failing call took %v", took)
	}
	if code, _ := do(t, "GET", srv.http+"/health/ready", nil); code != 503 {
		t.Errorf("/health/ready with the database gone = %d, want 503", code)
	}
	proxy.start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body = issue()
		if code == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 30s after the database came back: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := do(t, "GET", srv.http+"/health/ready", nil); code != 200 {
		t.Errorf("/health/ready after recovery = %d, want 200", code)
	}
}
