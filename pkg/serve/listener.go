package serve

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Listener caps the connections one listener holds open, so that no peer can
// exhaust the process's file descriptors (and with them every other listener,
// the database and the upstream). At the cap, a new connection takes the slot
// of the connection that has been idle longest (an HTTP connection between
// requests, or one that has not finished sending its request headers), and is
// closed at once if there is none: accepted and closed, never left waiting in
// the kernel's accept queue, so the peer learns at once and retries.
//
// Taking an idle connection's slot keeps health probes and Prometheus
// scrapes working while an attacker holds every slot with idle connections:
// to keep a new connection out, every slot must be serving a request, and a
// request is bounded by the server's timeouts. gRPC connections report no
// idleness, so a full gRPC listener refuses new connections; idle gRPC
// connections are closed by the keepalive settings of [GRPCOptions].
//
// On a TLS listener the same holds: a connection is idle from its accept
// until its first request's headers are read, TLS handshake included (a
// peer that connects and never sends its ClientHello holds a slot only
// until a newer connection needs it, or the handshake times out), and
// between keep-alive requests, HTTP/2 ones included.
type Listener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open int
	idle conn // sentinel of the idle list, oldest first

	refused, evicted atomic.Uint64
}

// Listen binds addr (TCP) and caps its open connections at maxConns (at
// least 1).
func Listen(ctx context.Context, addr string, maxConns int) (*Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return LimitListener(ln, maxConns), nil
}

// LimitListener caps the open connections of ln at maxConns (at least 1).
func LimitListener(ln net.Listener, maxConns int) *Listener {
	l := &Listener{Listener: ln, max: max(maxConns, 1)}
	l.idle.prev, l.idle.next = &l.idle, &l.idle
	return l
}

// Accept returns the next connection that fits under the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &conn{Conn: nc, l: l}
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return c, nil
		}
		victim := l.idle.next
		if victim == &l.idle {
			l.mu.Unlock()
			l.refused.Add(1)
			_ = nc.Close()
			continue
		}
		// The victim's slot passes to c.
		victim.unlink()
		victim.released = true
		l.mu.Unlock()
		l.evicted.Add(1)
		_ = victim.Conn.Close()
		return c, nil
	}
}

// ConnState is an http.Server ConnState hook: it tells the listener which
// connections are idle. [HTTPServer] installs it. A TLS server reports the
// *tls.Conn over the listener's connection; it is unwrapped.
func (l *Listener) ConnState(nc net.Conn, s http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok || c.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return
	}
	c.unlink()
	if s == http.StateNew || s == http.StateIdle {
		c.prev, c.next = l.idle.prev, &l.idle
		l.idle.prev.next = c
		l.idle.prev = c
	}
}

// ListenerStats are a listener's counters.
type ListenerStats struct {
	Open    int    // connections open now
	Max     int    // the cap
	Refused uint64 // connections closed on accept: the cap was reached and none was idle
	Evicted uint64 // idle connections closed to admit a new one
}

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return ListenerStats{Open: open, Max: l.max, Refused: l.refused.Load(), Evicted: l.evicted.Load()}
}

func (l *Listener) String() string { return fmt.Sprintf("%s (max %d connections)", l.Addr(), l.max) }

// conn is an accepted connection; it gives its slot back when closed.
type conn struct {
	net.Conn
	l *Listener

	// Guarded by l.mu.
	prev, next *conn // in l.idle while idle
	released   bool  // its slot was given back or passed on
}

func (c *conn) Close() error {
	c.l.mu.Lock()
	if !c.released {
		c.released = true
		c.unlink()
		c.l.open--
	}
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// unlink removes c from the idle list, if it is there. Called with l.mu held.
func (c *conn) unlink() {
	if c.next == nil {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
}
