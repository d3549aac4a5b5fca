package telemetry_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/talos-project/talos/pkg/telemetry"
)

// TestInstrumentHTTP_MethodLabelsAreBounded: a client chooses any method
// token it likes; each must not become a series of its own, or anyone who
// can reach the port grows /metrics (and the process) without bound.
func TestInstrumentHTTP_MethodLabelsAreBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := telemetry.InstrumentHTTP(reg, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	// Raw HTTP/1.1 on one keep-alive connection: the fastest way to send
	// many requests, and no client library second-guesses the methods.
	const n = 5000
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		w := bufio.NewWriter(c)
		for i := range n {
			fmt.Fprintf(w, "X%dMETHOD / HTTP/1.1\r\nHost: t\r\n\r\n", i)
		}
		fmt.Fprintf(w, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
		_ = w.Flush()
	}()
	r := bufio.NewReader(c)
	for i := range n + 1 {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if len(body) > 16<<10 {
		t.Errorf("exposition is %d bytes after %d requests with distinct methods, want < 16 KiB", len(body), n)
	}
	for _, want := range []string{
		`talos_http_requests_total{code="404",method="_OTHER"} 5000`,
		`talos_http_requests_total{code="404",method="GET"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s:\n%.2000s", want, body)
		}
	}
}
