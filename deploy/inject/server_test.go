package inject_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/talos-project/talos/deploy/inject"
	"github.com/talos-project/talos/pkg/tlsconf"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

const webhookHost = "talos-injector.talos.svc"

type testServer struct {
	url    string
	ca     *tlstest.CA
	cancel context.CancelFunc
	done   chan error
	now    *atomic.Int64 // the TLS reloader's clock, Unix nanoseconds
	dir    string
}

// startServer runs the webhook over HTTPS on 127.0.0.1:0 with a
// certificate of a test CA, re-read when the files change (the reloader's
// clock is the test's).
func startServer(t *testing.T, drain time.Duration) *testServer {
	t.Helper()
	ts := &testServer{ca: tlstest.NewCA(t, "injector test CA"), dir: t.TempDir(), now: new(atomic.Int64), done: make(chan error, 1)}
	ts.now.Store(time.Now().UnixNano())
	cert, key := ts.ca.Server(t, webhookHost).Write(t, ts.dir, "tls")
	srvTLS, err := tlsconf.NewServer(tlsconf.ServerOptions{
		CertFile: cert, KeyFile: key, CheckInterval: time.Second,
		Now: func() time.Time { return time.Unix(0, ts.now.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := inject.NewHandler(mustInjector(t, "testdata/native/injector.yaml"), nil)
	srv, err := inject.NewServer(h, inject.ServerOptions{Listener: ln, TLS: srvTLS.Config("h2", "http/1.1"), DrainDelay: drain})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ts.cancel = cancel
	go func() { ts.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ts.done
	})
	ts.url = "https://" + srv.Addr().String()
	return ts
}

// client trusts the test CA only and opens a new connection per request,
// so that every request sees the certificate served now.
func (ts *testServer) client(minVersion, maxVersion uint16) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: ts.ca.Pool(), ServerName: webhookHost,
			MinVersion: minVersion, MaxVersion: maxVersion},
	}}
}

func post(t *testing.T, c *http.Client, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestServer_HTTPS calls the webhook over a real TLS socket, as the API
// server does: a review is answered with its patch; malformed requests get
// 4xx without a review; TLS below 1.2 is refused; the health endpoints
// answer.
func TestServer_HTTPS(t *testing.T) {
	t.Parallel()
	ts := startServer(t, 0)
	c := ts.client(tls.VersionTLS12, 0)
	review, err := os.ReadFile("testdata/native/no-annotations.in.json")
	if err != nil {
		t.Fatal(err)
	}

	resp, body := post(t, c, ts.url+"/inject", "application/json", review)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2 (ALPN h2)", resp.Proto)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 || out.Response.UID != "0c4e6c6e-0001-4b4e-8a8e-000000000002" {
		t.Fatalf("response %+v", out.Response)
	}

	big := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"a":"`),
		bytes.Repeat([]byte("a"), inject.MaxReviewBytes)...)
	for name, tc := range map[string]struct {
		contentType string
		body        []byte
		status      int
	}{
		"text/plain": {"text/plain", review, http.StatusUnsupportedMediaType},
		"no type":    {"", review, http.StatusUnsupportedMediaType},
		"garbage":    {"application/json", []byte("{"), http.StatusBadRequest},
		// A newer API server may add fields to the envelope: tolerated.
		"unknown field": {"application/json", bytes.Replace(review, []byte(`"request": {`), []byte(`"request": {"newerField": 1,`), 1), http.StatusOK},
		"duplicate uid": {"application/json", bytes.Replace(review, []byte(`"request": {`), []byte(`"request": {"uid": "other",`), 1), http.StatusBadRequest},
		"v1beta1":       {"application/json", bytes.Replace(review, []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1), http.StatusBadRequest},
		"too large":     {"application/json", big, http.StatusRequestEntityTooLarge},
	} {
		resp, body := post(t, c, ts.url+"/inject", tc.contentType, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, tc.status, body)
		}
	}
	if resp, err := c.Get(ts.url + "/inject"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /inject: %v %v", resp, err)
	}
	for _, path := range []string{"/health/alive", "/health/ready"} {
		resp, err := c.Get(ts.url + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v", path, resp, err)
		}
	}
	if _, err := ts.client(tls.VersionTLS10, tls.VersionTLS11).Get(ts.url + "/health/alive"); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
}

// TestServer_CertificateRotation replaces the webhook's certificate files
// (cert-manager renewing its Secret) and expects new connections to get
// the new certificate without a restart.
func TestServer_CertificateRotation(t *testing.T) {
	t.Parallel()
	ts := startServer(t, 0)
	serial := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get(ts.url + "/health/alive")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	c := ts.client(tls.VersionTLS12, 0)
	before := serial(c)
	ca2 := tlstest.NewCA(t, "rotated CA")
	ca2.Server(t, webhookHost).Write(t, ts.dir, "tls")
	ts.now.Add(int64(2 * time.Second))
	pool := ts.ca.Pool()
	pool.AddCert(ca2.Cert)
	c.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool
	// The first handshake after the interval re-reads the files; polled
	// because the check runs on a handshake, not on a timer.
	deadline := time.Now().Add(10 * time.Second)
	for serial(c) == before {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was never served")
		}
		ts.now.Add(int64(2 * time.Second))
	}
}

// TestServer_Shutdown cancels the server's context: /health/ready turns 503
// at once while reviews are still answered during the drain delay, then
// Run returns nil and the listener is closed.
func TestServer_Shutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, 3*time.Second)
	c := ts.client(tls.VersionTLS12, 0)
	review, err := os.ReadFile("testdata/native/no-annotations.in.json")
	if err != nil {
		t.Fatal(err)
	}
	ts.cancel()
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := c.Get(ts.url + "/health/ready")
		if err != nil {
			t.Fatalf("listener closed before readiness failed: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("readiness never failed")
		}
	}
	if resp, body := post(t, c, ts.url+"/inject", "application/json", review); resp.StatusCode != http.StatusOK {
		t.Fatalf("review during the drain: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		ts.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := c.Get(ts.url + "/health/alive"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("after shutdown: %v, want connection refused", err)
	}
}
