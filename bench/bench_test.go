package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play the no-op baseline: the harness
// re-executes its own executable for it, which under `go test` is this
// binary.
func TestMain(m *testing.M) {
	if os.Getenv(childRoleEnv) == childNoop {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke runs every scenario in smoke mode (points of 300 ms, tiny key
// counts) against a freshly built talos binary, so that the harness cannot
// rot, and checks what it wrote. It skips the PostgreSQL and Redis
// scenarios, saying so, when TALOS_TEST_POSTGRES_DSN or
// TALOS_TEST_REDIS_ADDR is unset.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the smoke run builds talos and runs it as subprocesses")
	}
	root, err := moduleRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	bin, err := buildTalos(t.Context(), root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"-quick"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	o.out, o.talosBin = t.TempDir(), bin
	o.pgDSN, o.redis = os.Getenv("TALOS_TEST_POSTGRES_DSN"), os.Getenv("TALOS_TEST_REDIS_ADDR")
	if o.pgDSN == "" {
		t.Log("TALOS_TEST_POSTGRES_DSN is not set: skipping miss-postgres and mixed")
	}
	if o.redis == "" {
		t.Log("TALOS_TEST_REDIS_ADDR is not set: skipping l2-redis")
	}
	reps, err := runBench(t.Context(), o, &testLog{t: t})
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != len(scenarioNames) {
		t.Fatalf("got %d reports, want one per scenario (%d)", len(reps), len(scenarioNames))
	}
	for _, rep := range reps {
		t.Run(rep.Scenario, func(t *testing.T) { checkReport(t, o, rep) })
	}
	t.Run("summary", func(t *testing.T) {
		md := mustRead(t, filepath.Join(o.out, reps[0].Date+"-summary.md"))
		for _, want := range []string{
			"| scenario | mode | target rps | achieved rps | p50 | p90 | p99 | p99.9 | errors | ratio to baseline |",
			"## Goals", "L1-hit throughput, gRPC ext_authz", "### revocation",
			"| point | variant | req/s | p50 | p99 | server CPU µs/req | ×plaintext req/s |", "### miss-mtls", "### verify-tls",
		} {
			if !strings.Contains(string(md), want) {
				t.Errorf("summary lacks %q", want)
			}
		}
		pngs := []string{"throughput.png", "l1-hit-grpc-latency.png", "l1-hit-http-latency.png"}
		for _, name := range pngs {
			p := reps[0].Date + "-" + name
			if b := mustRead(t, filepath.Join(o.out, p)); !bytes.HasPrefix(b, []byte("\x89PNG\r\n")) {
				t.Errorf("%s is not a PNG", p)
			}
			if !strings.Contains(string(md), "("+p+")") {
				t.Errorf("summary does not embed %s", p)
			}
		}
	})
}

// checkReport checks one scenario's report and its JSON file.
func checkReport(t *testing.T, o options, rep *report) {
	t.Helper()
	var fromFile report
	if err := json.Unmarshal(mustRead(t, filepath.Join(o.out, rep.Date+"-"+rep.Scenario+".json")), &fromFile); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if fromFile.Scenario != rep.Scenario || fromFile.Status != rep.Status || len(fromFile.Points) != len(rep.Points) {
		t.Errorf("JSON file holds %q/%q with %d points, want %q/%q with %d", fromFile.Scenario, fromFile.Status, len(fromFile.Points), rep.Scenario, rep.Status, len(rep.Points))
	}
	switch {
	case strings.HasPrefix(rep.Status, "skipped: "):
		if sc, _ := scenarioByName(rep.Scenario); sc.unavailable(o) == "" {
			t.Fatalf("skipped although its services are configured: %s", rep.Status)
		}
		t.Skip(rep.Status)
	case rep.Scenario == "revocation":
		if rep.Status != "ok" && rep.Status != "not yet: push invalidation is a separate issue" {
			t.Fatalf("status %q", rep.Status)
		}
		if rep.Revocation == nil || rep.Revocation.Supported == strings.HasPrefix(rep.Status, "not yet") {
			t.Fatalf("revocation result %+v does not match status %q", rep.Revocation, rep.Status)
		}
		return
	case rep.Status != "ok":
		t.Fatalf("status %q", rep.Status)
	}
	measured := 0
	for _, p := range rep.Points {
		name := fmt.Sprintf("%s %s %s %s", p.Target, p.Transport, p.Mode, rateText(p.TargetRPS))
		if p.Skipped != "" {
			continue
		}
		measured++
		l := p.Latency
		switch {
		case p.AchievedRPS <= 0 || p.Requests == 0:
			t.Errorf("%s: %v req/s over %d requests", name, p.AchievedRPS, p.Requests)
		case p.Errors != 0:
			// Every scenario checks credentials that must be allowed.
			t.Errorf("%s: %d errors on an allow path, first: %s", name, p.Errors, p.FirstError)
		case !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max):
			t.Errorf("%s: percentiles out of order: %+v", name, l)
		}
		if b := rep.baselineOf(p); p.Target == targetSidecar && b.Skipped == "" && p.Ratio == nil {
			t.Errorf("%s: no ratio to its baseline %q", name, p.Baseline)
		}
		if p.Target != targetNoop && len(p.CPUCores) < 2 {
			t.Errorf("%s: CPU of the server and the load generator not both measured: %v", name, p.CPUCores)
		}
	}
	if measured == 0 {
		t.Fatal("no measured point")
	}
	switch rep.Scenario {
	case "l1-hit":
		if len(rep.Goals) < 2 {
			t.Errorf("goals not evaluated: %+v", rep.Goals)
		}
	case "l1-hit-ratelimited":
		want := 2 // memory: throughput and p99
		if o.redis != "" {
			want++ // redis: throughput
		}
		if len(rep.Goals) < want {
			t.Errorf("goals not evaluated: %+v", rep.Goals)
		}
	case "mixed":
		if rep.Published == nil || rep.Points[0].Classes["verify"].Requests == 0 || rep.Points[0].Classes["issue"].Requests == 0 {
			t.Errorf("mixed profile: published %+v, classes %+v", rep.Published, rep.Points[0].Classes)
		}
	case "miss-mtls", "verify-tls":
		checkComparison(t, rep)
	case "memory":
		m := rep.Memory
		if m == nil || len(m.Steps) != len(o.sizes.memoryKeys)+1 || m.Extrapolated == nil || m.BigAtRest == nil || m.Retained <= 0 {
			t.Fatalf("memory result %+v", m)
		}
		for _, s := range m.Steps {
			if s.RSSBytes <= 0 || s.HeapInuseBytes <= 0 {
				t.Errorf("memory step %+v", s)
			}
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLog writes the harness's progress lines to the test log.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

// TestOpenLoop_LatencyFromIntendedTime stalls one request and checks that
// the requests scheduled behind it are charged the wait (coordinated-
// omission correction), while their service time is not.
func TestOpenLoop_LatencyFromIntendedTime(t *testing.T) {
	const stall = 200 * time.Millisecond
	do := func(ctx context.Context, seq uint64) (int, error) {
		if seq == 10 {
			time.Sleep(stall)
		}
		return 0, nil
	}
	res, err := runLoad(t.Context(), loadSpec{workers: 1, rate: 1000, duration: 500 * time.Millisecond}, do)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 500 || res.errors != 0 {
		t.Fatalf("%d requests, %d errors; want 500 and 0", res.requests, res.errors)
	}
	// About 200 of the 500 requests were due during the stall: the p90 is
	// at least half the stall, whatever the machine's speed.
	if got := time.Duration(res.hist.ValueAtQuantile(90)) * time.Microsecond; got < stall/2 {
		t.Errorf("p90 = %v, want ≥ %v: the queued requests' wait was not counted", got, stall/2)
	}
	if got := time.Duration(res.service.ValueAtQuantile(50)) * time.Microsecond; got >= stall/2 {
		t.Errorf("service-time p50 = %v, want < %v", got, stall/2)
	}
}

// TestClosedLoop_MaxOps checks that a unique-key run stops when its keys
// run out and counts each request once.
func TestClosedLoop_MaxOps(t *testing.T) {
	var mu sync.Mutex
	seen := map[uint64]bool{}
	do := func(ctx context.Context, seq uint64) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if seen[seq] {
			return 0, fmt.Errorf("request %d sent twice", seq)
		}
		seen[seq] = true
		return 0, nil
	}
	res, err := runLoad(t.Context(), loadSpec{workers: 8, duration: time.Minute, maxOps: 1000}, do)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 1000 || res.errors != 0 || !res.exhausted || len(seen) != 1000 {
		t.Fatalf("requests %d, errors %d (%s), exhausted %v, distinct %d; want 1000, 0, true, 1000", res.requests, res.errors, res.firstError, res.exhausted, len(seen))
	}
	if res.elapsed >= time.Minute {
		t.Errorf("elapsed %v: the run did not end when its keys ran out", res.elapsed)
	}
}

// TestProbeTLS checks the probe that stands behind the TLS scenarios'
// claims: it accepts a listener that serves the right certificate and
// requires a client certificate, and fails one that does not require it or
// serves another certificate.
func TestProbeTLS(t *testing.T) {
	var fl fleet
	t.Cleanup(func() { _ = fl.close() })
	p, err := newPKI(&fl)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := p.serverLeaf("server")
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.serverLeaf("other")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := p.clientLeaf("client", sidecarSPIFFE)
	if err != nil {
		t.Fatal(err)
	}
	listen := func(cert leaf, auth tls.ClientAuthType) string {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.pair}, ClientAuth: auth, ClientCAs: p.pool})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					// Like a gRPC server, speak first once the handshake is done
					// (so the probe need not wait for its read deadline).
					if c.(*tls.Conn).Handshake() == nil {
						_, _ = c.Write([]byte{0})
					}
					_, _ = io.Copy(io.Discard, c)
				}()
			}
		}()
		return ln.Addr().String()
	}
	mutual, serverOnly, wrong := listen(srv, tls.RequireAndVerifyClientCert), listen(srv, tls.NoClientCert), listen(other, tls.NoClientCert)
	for _, c := range []struct {
		name, addr    string
		require, fail bool
	}{
		{"mTLS listener, mTLS wanted", mutual, true, false},
		{"server-only TLS, server TLS wanted", serverOnly, false, false},
		{"server-only TLS, mTLS wanted", serverOnly, true, true},
		{"another certificate", wrong, false, true},
	} {
		if err := p.probeTLS(c.addr, srv, cli, c.require); (err != nil) != c.fail {
			t.Errorf("%s: probe error %v, want failure %v", c.name, err, c.fail)
		}
	}
}

func TestMetrics_Sum(t *testing.T) {
	m := metrics{
		`talos_proxy_cache_lookups_total{layer="memory",result="hit"}`:  7,
		`talos_proxy_cache_lookups_total{layer="memory",result="miss"}`: 2,
		`talos_proxy_cache_lookups_total{layer="redis",result="hit"}`:   5,
		`talos_proxy_upstream_calls_total`:                              3,
		`talos_proxy_upstream_calls_total_other`:                        100,
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"talos_proxy_cache_lookups_total", []string{`layer="memory"`, `result="hit"`}, 7},
		{"talos_proxy_cache_lookups_total", []string{`result="hit"`}, 12},
		{"talos_proxy_cache_lookups_total", nil, 14},
		{"talos_proxy_upstream_calls_total", nil, 3},
	} {
		if got := m.sum(c.name, c.labels...); got != c.want {
			t.Errorf("sum(%s, %v) = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// checkComparison checks a TLS scenario's side-by-side table: at every load
// point each variant is there, and each TLS variant has its ratio to
// plaintext.
func checkComparison(t *testing.T, rep *report) {
	t.Helper()
	want := map[string][]string{"miss-mtls": {"no-op", "plaintext", "mTLS"}, "verify-tls": {"plaintext", "HTTPS", "mTLS"}}[rep.Scenario]
	c := rep.Comparison
	if c == nil || c.Against != "plaintext" {
		t.Fatalf("comparison %+v", c)
	}
	byPoint := map[string][]comparisonRow{}
	for _, row := range c.Rows {
		byPoint[row.Point] = append(byPoint[row.Point], row)
	}
	if byPoint["closed max"] == nil || len(byPoint) < 2 {
		t.Errorf("comparison points %v: want the closed loop and an open loop", slices.Collect(maps.Keys(byPoint)))
	}
	for pt, rows := range byPoint {
		var got []string
		for _, row := range rows {
			got = append(got, row.Variant)
			switch {
			case row.AchievedRPS <= 0 || row.P50 <= 0 || row.P99 < row.P50 || row.ServerCPUus <= 0:
				t.Errorf("%s %s: %+v", pt, row.Variant, row)
			case (row.Variant == "plaintext" || row.Variant == "no-op") != (row.Ratio == nil):
				t.Errorf("%s %s: ratio %+v", pt, row.Variant, row.Ratio)
			case row.Ratio != nil && pt == "closed max" && row.Ratio.Throughput <= 0:
				t.Errorf("%s %s: no throughput ratio", pt, row.Variant)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: variants %v, want %v", pt, got, want)
		}
	}
}
