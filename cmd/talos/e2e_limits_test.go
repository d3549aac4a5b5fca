//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The regression tests of issue 11, finding 6: nobody who can merely reach a
// port can grow the process's memory or exhaust its file descriptors.

// TestE2E_UnknownMethodsDoNotGrowMetrics: every HTTP method a client makes
// up used to become a series of its own on /metrics.
func TestE2E_UnknownMethodsDoNotGrowMetrics(t *testing.T) {
	srv := startServer(t)
	before := len(scrape(t, srv.metrics))

	const n = 2000
	addr := strings.TrimPrefix(srv.http, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		w := bufio.NewWriter(c)
		for i := range n {
			fmt.Fprintf(w, "M%d /v2alpha1/admin/issuedApiKeys HTTP/1.1\r\nHost: %s\r\n\r\n", i, addr)
		}
		_ = w.Flush()
	}()
	r := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	after := scrape(t, srv.metrics)
	if grew := len(after) - before; grew > 8<<10 {
		t.Errorf("/metrics grew by %d bytes after %d requests with made-up methods, want < 8 KiB", grew, n)
	}
	if !strings.Contains(after, `method="_OTHER"`) {
		t.Error(`/metrics has no method="_OTHER" series`)
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestE2E_IdleConnectionsDoNotMakeHealthUnreachable: a process limited to
// 160 file descriptors, 400 keep-alive connections left idle on its metrics
// port. Without a cap they held every descriptor for good (the metrics
// listener had no idle timeout), so nothing more was accepted, on any port;
// with one, health probes still get through, and the process holds no more
// than the cap.
func TestE2E_IdleConnectionsDoNotMakeHealthUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name, ready string
		args, env   []string
	}{
		{"serve", "Metrics server started", []string{"serve"},
			append(serverEnv(t.TempDir(), "0"), "TALOS_SERVE_LIMITS_MAX_CONNECTIONS=32")},
		{"proxy", "Proxy metrics server started", []string{"proxy"}, []string{
			"TALOS_PROXY_UPSTREAM=127.0.0.1:1",
			"TALOS_PROXY_EXTAUTHZ_HOST=127.0.0.1", "TALOS_PROXY_EXTAUTHZ_PORT=0",
			"TALOS_PROXY_HTTP_HOST=127.0.0.1", "TALOS_PROXY_HTTP_PORT=0",
			"TALOS_PROXY_METRICS_HOST=127.0.0.1", "TALOS_PROXY_METRICS_PORT=0",
			"TALOS_PROXY_LIMITS_MAX_CONNECTIONS=32", "TALOS_PROXY_SHUTDOWN_DRAIN_DELAY=0s",
			// Reachability is under test, not readiness: this sidecar's
			// control plane never answers.
			"TALOS_PROXY_READINESS_WAIT_FOR_UPSTREAM=false",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := startLimited(t, tc.args, tc.env, 160)
			addr := log.waitAddr(t, tc.ready)

			for i := range 400 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				defer c.Close()
				fmt.Fprintf(c, "GET /health/alive HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			}

			probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			ready := func() error {
				resp, err := probe.Get("http://" + addr + "/health/ready")
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
			deadline := time.Now().Add(10 * time.Second)
			for err := ready(); err != nil; err = ready() {
				if time.Now().After(deadline) {
					t.Fatalf("/health/ready unreachable with 400 idle connections open: %v\nlog:\n%s", err, log.String())
				}
			}
			// Not once by luck: every probe gets through.
			for i := range 20 {
				if err := ready(); err != nil {
					t.Fatalf("probe %d: %v", i, err)
				}
			}
			m := scrape(t, "http://"+addr)
			if !strings.Contains(m, `talos_listener_max_connections{listener="metrics"} 32`) {
				t.Errorf("/metrics does not report the metrics listener's cap of 32:\n%s", grepLines(m, "talos_listener"))
			}
			if n := metricValue(m, `talos_listener_connections{listener="metrics"}`); n > 32 {
				t.Errorf("metrics listener holds %v connections, cap 32", n)
			}
		})
	}
}

// startLimited runs `talos <args>` in a child process (this test binary,
// as TestE2E_LimitsHelperProcess) whose file-descriptor limit is nofile,
// and returns its log. The child stops when the test ends.
func startLimited(t *testing.T, args, env []string, nofile int) *logSink {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestE2E_LimitsHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(),
		"TALOS_TEST_LIMITS_HELPER=1",
		"TALOS_TEST_LIMITS_ARGS="+strings.Join(args, " "),
		"TALOS_TEST_LIMITS_NOFILE="+strconv.Itoa(nofile),
		"TALOS_TEST_LIMITS_ENV="+strings.Join(env, "\x1f"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	cmd.Stderr = sink
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close() // the child shuts down on EOF
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("child did not stop within 30s; killing it")
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return sink
}

// TestE2E_LimitsHelperProcess is the child of startLimited; it does nothing
// in a normal test run.
func TestE2E_LimitsHelperProcess(t *testing.T) {
	if os.Getenv("TALOS_TEST_LIMITS_HELPER") != "1" {
		t.Skip("the child process of startLimited")
	}
	n, _ := strconv.ParseUint(os.Getenv("TALOS_TEST_LIMITS_NOFILE"), 10, 64)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	env := strings.Split(os.Getenv("TALOS_TEST_LIMITS_ENV"), "\x1f")
	if err := run(ctx, strings.Fields(os.Getenv("TALOS_TEST_LIMITS_ARGS")), env, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// TestE2E_GRPCStreamsBeyondTheLimitAreRefused: streams that never send
// their request message used to be held without limit (each costs memory
// until the client goes away). Now a connection holds
// max_concurrent_streams of them and the server refuses the rest at once,
// before any handler runs: on the sidecar's ext_authz port, and on a control
// plane with tokens set, even for a caller with a valid token.
func TestE2E_GRPCStreamsBeyondTheLimitAreRefused(t *testing.T) {
	t.Run("proxy", func(t *testing.T) {
		p := startProxy(t, "127.0.0.1:1", "TALOS_PROXY_LIMITS_MAX_CONCURRENT_STREAMS=8")
		holdStreams(t, p.grpc, "/envoy.service.auth.v3.Authorization/Check", "", 40, 8)
	})
	t.Run("serve", func(t *testing.T) {
		side := "sidecar-token-that-is-long-enough-012345678"
		srv := startServer(t, "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=admin-token-that-is-long-enough-0123456789",
			"TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS="+side, "TALOS_SERVE_LIMITS_MAX_CONCURRENT_STREAMS=8")
		holdStreams(t, srv.grpc, "/talos.sidecar.v1.Verifier/Verify", "Bearer "+side, 40, 8)
	})
}

// holdStreams opens n gRPC streams on one HTTP/2 connection to addr, sends
// no message on any, and requires the server to advertise limit and refuse
// (RST_STREAM REFUSED_STREAM) the n-limit streams beyond it.
func holdStreams(t *testing.T, addr, path, auth string, n, limit int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}}
	if auth != "" {
		fields = append(fields, [2]string{"authorization", auth})
	}
	for i := range n {
		hb.Reset()
		for _, f := range fields {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}

	advertised, refused, answered := -1, 0, 0
	for advertised < 0 || refused < n-limit {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d streams: advertised MAX_CONCURRENT_STREAMS %d, %d refused, %d answered; want %d and %d refused: %v",
				n, advertised, refused, answered, limit, n-limit, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				advertised = 0 // none: unlimited
				if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
					advertised = int(v)
				}
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				refused++
			}
		case *http2.HeadersFrame:
			answered++
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v after %d refused", f.ErrCode, refused)
		}
	}
	if advertised != limit || refused != n-limit || answered != 0 {
		t.Errorf("advertised %d, refused %d, answered %d; want %d, %d, 0", advertised, refused, answered, limit, n-limit)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// metricValue is the value of the exposition line that starts with series,
// or -1.
func metricValue(exposition, series string) float64 {
	for l := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
