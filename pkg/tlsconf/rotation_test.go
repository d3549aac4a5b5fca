package tlsconf_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/tlsconf"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// layout is a way certificate files are replaced on disk.
type layout struct {
	name  string
	write func(t *testing.T, dir string, l *tlstest.Leaf) (certFile, keyFile string)
}

// layouts are the ways rotations arrive: tlstest's renames, and the
// kubelet's swap of a secret volume's ..data symlink (with ca as the
// secret's ca.crt).
func layouts(ca *tlstest.CA) []layout {
	return []layout{
		{"files replaced by rename", func(t *testing.T, dir string, l *tlstest.Leaf) (string, string) {
			return l.Write(t, dir, "server")
		}},
		{"kubernetes secret volume", func(t *testing.T, dir string, l *tlstest.Leaf) (string, string) {
			p := tlstest.WriteSecretVolume(t, dir, l.SecretFiles(ca))
			return p["tls.crt"], p["tls.key"]
		}},
	}
}

// A certificate replaced on disk is served from the first check after the
// change, and not before it: checks are paced by CheckInterval.
func TestServer_Rotation(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	old := ca.Server(t)
	next := ca.Issue(t, tlstest.Options{ // expiring later, for NotAfter
		CommonName: "localhost", DNS: []string{"localhost"}, Server: true, NotAfter: time.Now().Add(48 * time.Hour),
	})
	for _, layout := range layouts(ca) {
		t.Run(layout.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := layout.write(t, dir, old)
			s := newPacedServer(t, certFile, keyFile, time.Minute)
			s.assertServed(t, ca, old)

			if c, k := layout.write(t, dir, next); c != certFile || k != keyFile {
				t.Fatalf("rotation moved the files to %s, %s", c, k)
			}
			s.assertServed(t, ca, old) // no check due yet
			s.clk.Advance(time.Minute - time.Nanosecond)
			s.assertServed(t, ca, old)
			s.clk.Advance(time.Nanosecond)
			s.assertServed(t, ca, next)
			if !s.NotAfter().Equal(next.Cert.NotAfter) {
				t.Fatalf("NotAfter = %v, want the new certificate's %v", s.NotAfter(), next.Cert.NotAfter)
			}
			if n := s.logs.count("loaded server certificate"); n != 2 {
				t.Fatalf("%d loads logged, want 2:\n%s", n, s.logs)
			}
			if n := s.logs.count(fmt.Sprintf("serial=%x", next.Cert.SerialNumber.Bytes())); n != 1 {
				t.Fatalf("the new serial is logged %d times, want once:\n%s", n, s.logs)
			}
		})
	}
}

// A rotation caught half-way (the certificate replaced, the key not yet,
// or garbage, or gone; a chain cut short) keeps the old pair served,
// logs each distinct failure once, and completes on the first check after
// the files are whole.
func TestServer_HalfWrittenRotation(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	old := ca.Server(t)
	next := ca.Issue(t, tlstest.Options{
		CommonName: "localhost", DNS: []string{"localhost"}, Server: true, NotAfter: time.Now().Add(48 * time.Hour),
	})
	dir := t.TempDir()
	certFile, keyFile := old.Write(t, dir, "server")
	s := newPacedServer(t, certFile, keyFile, time.Second)
	logs := s.logs
	check := func(want *tlstest.Leaf) {
		t.Helper()
		s.clk.Advance(time.Second)
		s.assertServed(t, ca, want)
	}
	failures := func() int { return logs.count("level=ERROR") }

	writeFile(t, certFile, next.CertPEM) // the key is still the old one
	check(old)
	check(old)
	if n := failures(); n != 1 {
		t.Fatalf("%d failures logged for one mismatched pair, want 1:\n%s", n, logs)
	}
	writeFile(t, keyFile, []byte("garbage"))
	check(old)
	check(old)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	check(old)
	check(old)
	// The new certificate with a chain cut short: crypto/tls alone would
	// take the leaf and drop the half intermediate.
	writeFile(t, keyFile, next.KeyPEM)
	writeFile(t, certFile, append(append([]byte{}, next.CertPEM...), ca.PEM[:len(ca.PEM)/2]...))
	check(old)
	check(old)
	if n := failures(); n != 4 {
		t.Fatalf("%d failures logged for four broken states, want 4:\n%s", n, logs)
	}
	if !s.NotAfter().Equal(old.Cert.NotAfter) {
		t.Fatal("NotAfter moved to a certificate that is not served")
	}
	writeFile(t, certFile, next.CertPEM)
	check(next)
	check(next)
	if n := failures(); n != 4 {
		t.Fatalf("failures logged after the rotation completed:\n%s", logs)
	}
}

// Touching the files without changing them reloads nothing.
func TestServer_TouchedFilesNotReloaded(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	leaf := ca.Server(t)
	dir := t.TempDir()
	certFile, keyFile := leaf.Write(t, dir, "server")
	s := newPacedServer(t, certFile, keyFile, time.Second)
	leaf.Write(t, dir, "server") // same contents, new inodes and times
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(certFile, future, future); err != nil {
		t.Fatal(err)
	}
	s.clk.Advance(time.Second)
	s.assertServed(t, ca, leaf) // a check
	if n := s.logs.count("level="); n != 1 {
		t.Fatalf("%d log lines, want only the first load:\n%s", n, s.logs)
	}
}

// pacedServer is a Server on a settable clock, serving handshakes.
type pacedServer struct {
	*tlsconf.Server
	clk     *clock
	logs    *logBuffer
	addr    string
	results <-chan handshake
}

func newPacedServer(t *testing.T, certFile, keyFile string, interval time.Duration) *pacedServer {
	t.Helper()
	clk := newClock()
	log, logs := newTestLogger(t)
	s, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: certFile, KeyFile: keyFile, CheckInterval: interval, Now: clk.Now, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serveHandshakes(t, s.Config())
	return &pacedServer{Server: s, clk: clk, logs: logs, addr: addr, results: results}
}

// assertServed checks that a fresh handshake is served want.
func (s *pacedServer) assertServed(t *testing.T, ca *tlstest.CA, want *tlstest.Leaf) {
	t.Helper()
	if got := servedSerial(t, s.addr, s.results, ca.Pool()); got.Cmp(want.Cert.SerialNumber) != 0 {
		t.Fatalf("served serial %x, want %x", got, want.Cert.SerialNumber)
	}
}

// Clients making fresh TLS connections and HTTPS requests without pause
// see no failure while the files are rotated 20 times (each file replaced
// on its own, so handshakes race half-done rotations), and see each new
// certificate.
func TestServer_RotationUnderLoad(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	for _, layout := range layouts(ca) {
		t.Run(layout.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := layout.write(t, dir, ca.Server(t))
			s, err := tlsconf.NewServer(tlsconf.ServerOptions{
				CertFile: certFile, KeyFile: keyFile, CheckInterval: time.Nanosecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			url := serveHTTPS(t, s.Config("h2", "http/1.1"))

			var (
				stop     atomic.Bool
				requests atomic.Int64
				failed   atomic.Int64
				firstErr atomic.Value
				seenMu   sync.Mutex
				seen     = map[string]bool{}
				wg       sync.WaitGroup
			)
			for i := range 6 {
				wg.Go(func() {
					tr := &http.Transport{
						TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"},
						DisableKeepAlives: true, // a new connection and handshake per request
						ForceAttemptHTTP2: i%2 == 0,
					}
					defer tr.CloseIdleConnections()
					client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
					for !stop.Load() {
						serial, err := fetch(client, url)
						requests.Add(1)
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
							continue
						}
						seenMu.Lock()
						seen[serial.String()] = true
						seenMu.Unlock()
					}
				})
			}
			for range 20 {
				leaf := ca.Server(t)
				layout.write(t, dir, leaf)
				eventually(t, "the new certificate served", func() bool {
					seenMu.Lock()
					defer seenMu.Unlock()
					return seen[leaf.Cert.SerialNumber.String()]
				})
				// Some load between rotations, too.
				more := requests.Load() + 10
				eventually(t, "more requests", func() bool { return requests.Load() >= more })
			}
			stop.Store(true)
			wg.Wait()
			if n := failed.Load(); n != 0 {
				t.Fatalf("%d of %d requests failed; first: %v", n, requests.Load(), firstErr.Load())
			}
			t.Logf("%d requests, %d certificates seen", requests.Load(), len(seen))
		})
	}
}

// fetch makes one request and returns the serial of the certificate the
// server presented.
func fetch(client *http.Client, url string) (*big.Int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, nil
}

// The secret volume helper really swaps generations: the old one is gone,
// the paths stay.
func TestWriteSecretVolumeLayout(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	first := tlstest.WriteSecretVolume(t, dir, ca.Server(t).SecretFiles(ca))
	target1, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	second := tlstest.WriteSecretVolume(t, dir, ca.Server(t).SecretFiles(ca))
	target2, _ := os.Readlink(filepath.Join(dir, "..data"))
	if target1 == target2 || first["tls.crt"] != second["tls.crt"] {
		t.Fatalf("generations %s, %s; paths %v, %v", target1, target2, first, second)
	}
	if _, err := os.Stat(filepath.Join(dir, target1)); !os.IsNotExist(err) {
		t.Fatalf("old generation still there: %v", err)
	}
}
