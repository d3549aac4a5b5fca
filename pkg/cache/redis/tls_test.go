package redis_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/cache/redis"
	"github.com/talos-project/talos/pkg/credential"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// tlsRedis is a private redis-server that speaks only TLS.
type tlsRedis struct {
	addr   string
	ca     *tlstest.CA
	client tls.Certificate // a client certificate of ca
}

// startTLSRedis runs a redis-server with no plaintext port and a TLS port
// whose certificate ca issued; with requireClientCert it demands client
// certificates of ca. It is killed when the test ends.
//
// redis-server takes a port number, not a listener, so this is the one
// place a test port cannot be held: one is picked by binding :0 and
// closing, and if another process takes it before redis-server binds it,
// redis-server exits and is started again on a new port.
func startTLSRedis(t *testing.T, ca *tlstest.CA, requireClientCert bool) *tlsRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server); skipping the Redis TLS tests")
	}
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).Write(t, dir, "redis")
	r := &tlsRedis{ca: ca, client: ca.Client(t, "talos-proxy").TLSCertificate(t)}
	auth := "no"
	if requireClientCert {
		auth = "yes"
	}
	args := []string{"--bind", "127.0.0.1", "--port", "0",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", ca.WriteCA(t, dir, "ca.crt"),
		"--tls-auth-clients", auth, "--save", "", "--appendonly", "no", "--dir", dir}
	for attempt := 1; ; attempt++ {
		err := r.try(t, bin, args)
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
	}
}

// errPortTaken says the port picked for redis-server was taken before it
// bound it.
var errPortTaken = errors.New("port taken")

func (r *tlsRedis) try(t *testing.T, bin string, args []string) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// out is read only once redis-server has exited (and Wait has copied
	// all of its output).
	var out strings.Builder
	cmd := exec.Command(bin, append(args, "--tls-port", strconv.Itoa(port))...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	kill := func() { _ = cmd.Process.Kill(); <-exited }
	t.Cleanup(kill)
	deadline := time.Now().Add(10 * time.Second)
	for !r.ping() {
		select {
		case <-exited:
			if strings.Contains(out.String(), "in use") {
				return errPortTaken
			}
			return fmt.Errorf("redis-server exited before serving:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			kill()
			return fmt.Errorf("redis-server not answering PING over TLS on %s after 10s:\n%s", r.addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-exited: // what answered was not ours
		return errPortTaken
	default:
	}
	return nil
}

// ping reports whether a Redis that trusts r's client certificate and
// holds a certificate of r.ca answers PING on r.addr.
func (r *tlsRedis) ping() bool {
	d := &net.Dialer{Timeout: 100 * time.Millisecond}
	c, err := tls.DialWithDialer(d, "tcp", r.addr, &tls.Config{RootCAs: r.ca.Pool(), Certificates: []tls.Certificate{r.client}})
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return false
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line == "+PONG\r\n"
}

// store returns a Store on r with cfg, closed when the test ends.
func (r *tlsRedis) store(t *testing.T, cfg *tls.Config) *redis.Store {
	t.Helper()
	s, err := redis.New(redis.Options{Addrs: []string{r.addr}, Timeout: 2 * time.Second, TLSConfig: cfg, KeyPrefix: "talos-test:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// roundTrip stores a value and reads it back.
func roundTrip(t *testing.T, s *redis.Store) error {
	t.Helper()
	if err := s.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		return err
	}
	v, ok, err := s.Get(t.Context(), "k")
	if err != nil {
		return err
	}
	if !ok || string(v) != "v" {
		return fmt.Errorf("Get = %q, %v; want v, true", v, ok)
	}
	return nil
}

// wantRefused checks that every command on s fails as an outage.
func wantRefused(t *testing.T, s *redis.Store, what string) error {
	t.Helper()
	err := s.Ping(t.Context())
	if err == nil || !errors.Is(err, credential.ErrUnavailable) {
		t.Errorf("%s: Ping = %v, want ErrUnavailable", what, err)
	}
	if err := roundTrip(t, s); err == nil {
		t.Errorf("%s: Set and Get succeeded", what)
	}
	return err
}

// TestStore_TLS: a Store with the Redis server's CA works over TLS; one
// with another CA, or without TLS, gets nothing from it.
func TestStore_TLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "redis-ca")
	r := startTLSRedis(t, ca, false)
	if err := roundTrip(t, r.store(t, &tls.Config{RootCAs: ca.Pool()})); err != nil {
		t.Fatalf("with the server's CA: %v", err)
	}
	err := wantRefused(t, r.store(t, &tls.Config{RootCAs: tlstest.NewCA(t, "other").Pool()}), "with another CA")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("with another CA: %v, want an unknown-authority error", err)
	}
	wantRefused(t, r.store(t, nil), "plaintext")
}

// TestStore_TLSClientCertificate: a Redis that requires client certificates
// serves a Store that presents one of its CA, and no other.
func TestStore_TLSClientCertificate(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "redis-ca")
	r := startTLSRedis(t, ca, true)
	if err := roundTrip(t, r.store(t, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{r.client}})); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	wantRefused(t, r.store(t, &tls.Config{RootCAs: ca.Pool()}), "without a client certificate")
	other := tlstest.NewCA(t, "other").Client(t, "intruder").TLSCertificate(t)
	wantRefused(t, r.store(t, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{other}}), "with a client certificate of another CA")
}

// TestStore_TLSNoPlaintextFallback: a Store with TLS opens every connection
// with a TLS handshake, even after handshakes fail: nothing is ever sent in
// the clear.
func TestStore_TLSNoPlaintextFallback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := make(chan byte, 64)
	go func() {
		defer close(first)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var b [1]byte
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, b[:]); err == nil {
				first <- b[0]
			}
			c.Close() // a failed handshake
		}
	}()
	s, err := redis.New(redis.Options{Addrs: []string{ln.Addr().String()}, Timeout: time.Second, TLSConfig: &tls.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		if err := s.Ping(t.Context()); err == nil {
			t.Fatal("Ping answered by a listener that closes every connection")
		}
	}
	ln.Close()
	n := 0
	for b := range first {
		n++
		if b != 0x16 { // a TLS handshake record
			t.Errorf("a connection began with %#x, not a TLS handshake", b)
		}
	}
	if n == 0 {
		t.Error("no connection reached the listener")
	}
}
