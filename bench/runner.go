package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// runner holds what the scenarios of one run share: the options, the no-op
// baseline process and the baseline points measured so far (the no-op
// answers the same whatever the keys, so one measurement per setting serves
// every scenario of the run).
type runner struct {
	o         options
	progress  io.Writer
	date      string
	host      hostInfo
	fl        fleet
	noop      *noopTarget
	baselines map[string]point
	current   string // the scenario running
}

type noopTarget struct {
	proc     *proc
	check    *checkClient
	httpBase string
	hc       *http.Client
	reqs     []*authv3.CheckRequest
	creds    []string
}

func newRunner(o options, progress io.Writer) *runner {
	return &runner{o: o, progress: progress, date: time.Now().UTC().Format(time.DateOnly), host: readHost(), baselines: map[string]point{}}
}

func (r *runner) close() {
	if r.noop != nil {
		r.noop.check.Close()
		r.noop.hc.CloseIdleConnections()
	}
	if err := r.fl.close(); err != nil {
		fmt.Fprintln(r.progress, "warning:", err)
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, format+"\n", args...)
}

// openWorkers bounds the requests in flight in an open loop: enough that
// the rate, not the pool, sets the pace (wrk2 keeps a connection per
// in-flight request in the same way).
func (r *runner) openWorkers() int { return max(256, 4*r.o.workers) }

// runScenario runs one scenario in a fleet of its own and returns its
// report; a failure is recorded in the report's status.
func (r *runner) runScenario(ctx context.Context, name string) *report {
	sc, ok := scenarioByName(name)
	if !ok {
		return &report{Scenario: name, Date: r.date, Status: "failed: unknown scenario"}
	}
	rep := &report{
		Scenario: sc.name, Title: sc.title, About: sc.about, Date: r.date, Host: r.host, Status: "ok",
		Settings: settings{
			DurationS: r.o.duration.Seconds(), WarmupS: r.o.warmup.Seconds(), Workers: r.o.workers,
			Conns: r.o.conns, OpenWorkers: r.openWorkers(), Quick: r.o.quick,
		},
	}
	r.current = sc.name
	r.logf("== %s: %s", sc.name, sc.title)
	if why := sc.unavailable(r.o); why != "" {
		rep.Status = "skipped: " + why
		r.logf("   %s", rep.Status)
		return rep
	}
	start := time.Now()
	var fl fleet
	err := sc.run(ctx, r, &fl, rep)
	if cerr := fl.close(); err == nil && cerr != nil {
		err = fmt.Errorf("stopping processes: %w", cerr)
	}
	if err != nil {
		rep.Status = "failed: " + err.Error()
		r.logf("   FAILED: %v", err)
	}
	rep.ElapsedS = math.Round(time.Since(start).Seconds()*10) / 10
	r.logf("   (%s: %.1f s)", sc.name, rep.ElapsedS)
	return rep
}

// measurement is one point to measure.
type measurement struct {
	target    string // "sidecar", "no-op baseline", "control plane"
	label     string
	transport string // "grpc" or "http"
	spec      loadSpec
	do        op
	// procs are the processes whose CPU time is reported; the first one's
	// RSS too.
	procs []*proc
	// metrics is a sidecar metrics base URL whose counters say where the
	// verdicts came from; "" for none.
	metrics string
	// perRound, when set, gives each round of measureAlternating a fresh op
	// and its request bound (unique keys: a round must not reuse the keys
	// of the one before); do and spec.maxOps are then ignored.
	perRound func() (op, uint64, error)
}

// sample is one run of a measurement.
type sample struct {
	res     loadResult
	wall    time.Duration
	cpu     map[string]time.Duration // by process name, and "load generator"
	sources map[string]float64
	rss     int64
}

// sampleOnce runs m with spec.
func (r *runner) sampleOnce(ctx context.Context, m measurement, spec loadSpec) (sample, error) {
	for _, p := range m.procs {
		if err := p.alive(); err != nil {
			return sample{}, err
		}
	}
	var m0 metrics
	if m.metrics != "" {
		var err error
		if m0, err = scrape(ctx, m.metrics); err != nil {
			return sample{}, err
		}
	}
	cpu0 := make([]time.Duration, len(m.procs))
	for i, p := range m.procs {
		cpu0[i], _ = p.cpu()
	}
	busy0, busyErr := machineBusy()
	self0, t0 := selfCPU(), time.Now()
	res, err := runLoad(ctx, spec, m.do)
	if err != nil {
		return sample{}, err
	}
	sm := sample{res: res, wall: time.Since(t0), cpu: map[string]time.Duration{"load generator": selfCPU() - self0}}
	busy1, err := machineBusy()
	others := busy1 - busy0 - sm.cpu["load generator"]
	for i, p := range m.procs {
		if c, err := p.cpu(); err == nil {
			sm.cpu[p.name] = c - cpu0[i]
			others -= c - cpu0[i]
		}
	}
	if busyErr == nil && err == nil {
		sm.cpu[otherCPU] = max(0, others)
	}
	if len(m.procs) > 0 {
		sm.rss, _ = m.procs[0].rss()
	}
	for _, p := range m.procs {
		if err := p.alive(); err != nil {
			return sample{}, err
		}
	}
	if m.metrics != "" {
		m1, err := scrape(ctx, m.metrics)
		if err != nil {
			return sample{}, err
		}
		sm.sources = sourceDelta(m0, m1)
	}
	return sm, nil
}

// merge adds b to a.
func (a *sample) merge(b sample) {
	a.res.merge(b.res)
	a.wall += b.wall
	for k, v := range b.cpu {
		a.cpu[k] += v
	}
	if b.sources != nil && a.sources == nil {
		a.sources = map[string]float64{}
	}
	for k, v := range b.sources {
		a.sources[k] += v
	}
	a.rss = b.rss
}

// measure runs m and returns its point (not yet added to a report).
func (r *runner) measure(ctx context.Context, m measurement) (point, error) {
	sm, err := r.sampleOnce(ctx, m, m.spec)
	if err != nil {
		return point{}, err
	}
	return r.finish(m, sm), nil
}

// measureAlternating measures ms in turn, rounds times, each round taking
// 1/rounds of its duration (the warm-up runs in the first round), and
// merges each one's rounds: drift of the machine during the measurement
// then falls on all of them alike.
func (r *runner) measureAlternating(ctx context.Context, ms []measurement, rounds int) ([]point, error) {
	merged := make([]sample, len(ms))
	for round := range rounds {
		for i, m := range ms {
			spec := m.spec
			spec.duration = m.spec.duration / time.Duration(rounds)
			if round > 0 {
				spec.warmup = 0
			}
			if m.perRound != nil {
				var err error
				if m.do, spec.maxOps, err = m.perRound(); err != nil {
					return nil, fmt.Errorf("%s, round %d: %w", m.label, round+1, err)
				}
			}
			sm, err := r.sampleOnce(ctx, m, spec)
			if err != nil {
				return nil, err
			}
			if round == 0 {
				merged[i] = sm
			} else {
				merged[i].merge(sm)
			}
		}
	}
	out := make([]point, len(ms))
	for i, m := range ms {
		out[i] = r.finish(m, merged[i])
	}
	return out, nil
}

// rounds is how many alternating rounds a point of the L1-hit scenario is
// split into: rounds of about 2 s.
func (r *runner) rounds() int { return min(5, max(1, int(r.o.duration/(2*time.Second)))) }

// finish turns a sample into a point and logs it.
func (r *runner) finish(m measurement, sm sample) point {
	pt := pointFrom(m, sm.res)
	wall := sm.wall.Seconds()
	pt.CPUCores = map[string]float64{}
	for k, v := range sm.cpu {
		pt.CPUCores[k] = round3(v.Seconds() / wall)
	}
	pt.RSSBytes, pt.Sources = sm.rss, sm.sources
	r.logf("   %-15s %-32s %-5s %-6s %8s → %9.0f req/s  p50 %7.3f  p99 %8.3f  p99.9 %8.3f ms  errors %d%s",
		pt.Target, trimTo(pt.Label, 32), pt.Transport, pt.Mode, rateText(pt.TargetRPS), pt.AchievedRPS,
		pt.Latency.P50, pt.Latency.P99, pt.Latency.P999, pt.Errors, errSuffix(pt))
	return pt
}

func errSuffix(p point) string {
	if p.FirstError == "" {
		return ""
	}
	return " (" + trimTo(p.FirstError, 120) + ")"
}

func trimTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func rateText(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// closedSpec and openSpec are the load settings every scenario shares.
func (r *runner) closedSpec(warm bool, maxOps uint64) loadSpec {
	s := loadSpec{workers: r.o.workers, duration: r.o.duration, maxOps: maxOps}
	if warm {
		s.warmup = r.o.warmup
	}
	return s
}

func (r *runner) openSpec(rate float64, warm bool, maxOps uint64) loadSpec {
	s := r.closedSpec(warm, maxOps)
	s.workers, s.rate = r.openWorkers(), rate
	return s
}

func baselineKey(transport string, rate float64) string {
	return fmt.Sprintf("%s/%.0f", transport, rate)
}

// startNoop starts the no-op baseline process on first use.
func (r *runner) startNoop(ctx context.Context) (*noopTarget, error) {
	if r.noop != nil {
		return r.noop, r.noop.proc.alive()
	}
	p, err := r.fl.start(ctx, "no-op", r.o.self, []string{childNoop}, childEnv(childRoleEnv+"="+childNoop))
	if err != nil {
		return nil, err
	}
	ga, err := p.waitAddr(ctx, msgExtAuthz)
	if err != nil {
		return nil, err
	}
	ha, err := p.waitAddr(ctx, msgProxyHTTP)
	if err != nil {
		return nil, err
	}
	cc, err := dialCheck(ctx, ga, r.o.conns)
	if err != nil {
		return nil, err
	}
	// The no-op never looks at the credential; it gets the same request
	// shape as the sidecar.
	creds := []string{"ory_ak_v2_0000000000000000000000000000000000000000000000000000000000000000"}
	r.noop = &noopTarget{proc: p, check: cc, httpBase: "http://" + ha, hc: newHTTPClient(r.openWorkers()), reqs: checkRequests(creds), creds: creds}
	return r.noop, nil
}

// baseline returns the no-op baseline point for transport at rate (0 for
// the closed loop), measuring it on first use.
func (r *runner) baseline(ctx context.Context, transport string, rate float64) (point, error) {
	if p, ok := r.baselines[baselineKey(transport, rate)]; ok {
		return p, nil
	}
	m, skipped, err := r.baselineMeasurement(ctx, transport, rate)
	if err != nil || skipped != nil {
		return deref(skipped), err
	}
	p, err := r.measure(ctx, m)
	if err != nil {
		return point{}, err
	}
	return r.keepBaseline(p, transport, rate), nil
}

func deref(p *point) point {
	if p == nil {
		return point{}
	}
	return *p
}

// keepBaseline names a measured baseline point and keeps it for the run.
func (r *runner) keepBaseline(p point, transport string, rate float64) point {
	p.ID, p.MeasuredIn = baselineKey(transport, rate), r.current
	r.baselines[p.ID] = p
	return p
}

// baselineMeasurement returns the measurement of the no-op at rate, or a
// skipped point (kept for the run) when the rate is above the no-op's
// closed-loop maximum.
func (r *runner) baselineMeasurement(ctx context.Context, transport string, rate float64) (measurement, *point, error) {
	if rate > 0 {
		closed, err := r.baseline(ctx, transport, 0)
		if err != nil {
			return measurement{}, nil, err
		}
		if rate > closed.AchievedRPS {
			p := point{ID: baselineKey(transport, rate), Target: targetNoop, Label: noopLabel(transport), Transport: transport, Mode: "open", TargetRPS: rate,
				Skipped: fmt.Sprintf("above the closed-loop maximum (%.0f req/s)", closed.AchievedRPS)}
			r.baselines[p.ID] = p
			return measurement{}, &p, nil
		}
	}
	n, err := r.startNoop(ctx)
	if err != nil {
		return measurement{}, nil, err
	}
	var do op
	if transport == "grpc" {
		do = checkOp(n.check, n.reqs, false, true)
	} else {
		do = httpCheckOp(n.hc, n.httpBase, n.creds, false, true)
	}
	spec := r.closedSpec(true, 0)
	if rate > 0 {
		spec = r.openSpec(rate, true, 0)
	}
	return measurement{target: targetNoop, label: noopLabel(transport), transport: transport, spec: spec, do: do, procs: []*proc{n.proc}}, nil, nil
}

func noopLabel(transport string) string {
	if transport == "grpc" {
		return "returns OK at once"
	}
	return "200 at once"
}

const (
	targetNoop    = "no-op baseline"
	targetSidecar = "sidecar"
	targetCP      = "control plane"
)

// series is a sidecar workload measured in a closed loop and then in open
// loops at fixed rates up to the closed-loop maximum, each point next to
// the no-op baseline at the same settings.
type series struct {
	label     string
	transport string
	// work returns the op of a point that may send up to n requests (0:
	// unbounded) and how many it can really send (0: unbounded). Unique-key
	// workloads hand out fresh keys on every call.
	work   func(n uint64) (op, uint64)
	unique bool // each key once: no warm-up, closedOps bounds the closed loop
	// closedOps bounds the closed loop of a unique workload.
	closedOps uint64
	rates     []float64
	procs     []*proc
	metrics   string
	// alternate measures each point in rounds alternating with a fresh
	// baseline (see measureAlternating), which then replaces the run's
	// cached one; else the cached baseline is reused.
	alternate bool
}

// runSeries measures s and adds its points (and their baselines) to rep.
func (r *runner) runSeries(ctx context.Context, rep *report, s series) error {
	var closedMax float64
	for i, rate := range append([]float64{0}, s.rates...) {
		if i > 0 && rate > closedMax {
			rep.add(point{Target: targetSidecar, Label: s.label, Transport: s.transport, Mode: "open", TargetRPS: rate,
				Skipped: fmt.Sprintf("above the closed-loop maximum (%.0f req/s)", closedMax)})
			continue
		}
		want := s.closedOps
		if rate > 0 && s.unique {
			want = uint64(math.Ceil(rate * r.o.duration.Seconds()))
		}
		do, have := s.work(want)
		if s.unique && have == 0 {
			rep.add(point{Target: targetSidecar, Label: s.label, Transport: s.transport, Mode: modeOf(rate), TargetRPS: rate, Skipped: "no unused keys left"})
			continue
		}
		spec := r.closedSpec(!s.unique, have)
		if rate > 0 {
			spec = r.openSpec(rate, !s.unique, have)
		}
		m := measurement{target: targetSidecar, label: s.label, transport: s.transport, spec: spec, do: do, procs: s.procs, metrics: s.metrics}
		var base, pt point
		if s.alternate {
			if rate == 0 {
				delete(r.baselines, baselineKey(s.transport, 0)) // measure it afresh, with the sidecar
			}
			bm, skipped, err := r.baselineMeasurement(ctx, s.transport, rate)
			if err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			if skipped != nil {
				base = *skipped
				if pt, err = r.measure(ctx, m); err != nil {
					return err
				}
			} else {
				pts, err := r.measureAlternating(ctx, []measurement{bm, m}, r.rounds())
				if err != nil {
					return err
				}
				base, pt = r.keepBaseline(pts[0], s.transport, rate), pts[1]
			}
		} else {
			var err error
			if base, err = r.baseline(ctx, s.transport, rate); err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			if pt, err = r.measure(ctx, m); err != nil {
				return err
			}
		}
		if rate == 0 {
			closedMax = pt.AchievedRPS
		} else if s.unique && have < want {
			pt.Exhausted = true
		}
		rep.addBaseline(base)
		pt.Baseline = base.ID
		pt.Ratio = ratioTo(pt, base)
		rep.add(pt)
	}
	return nil
}

func modeOf(rate float64) string {
	if rate > 0 {
		return "open"
	}
	return "closed"
}

// cycling is the work of a workload that reuses its requests.
func cycling(do op) func(uint64) (op, uint64) {
	return func(uint64) (op, uint64) { return do, 0 }
}

// pool hands out unused check requests, each once.
type pool struct {
	reqs []*authv3.CheckRequest
	next int
}

// work returns an op over the next n unused requests (all that are left
// when fewer).
func (p *pool) work(check *checkClient, wantAllow bool) func(uint64) (op, uint64) {
	return func(n uint64) (op, uint64) {
		end := min(len(p.reqs), p.next+int(n))
		reqs := p.reqs[p.next:end]
		p.next = end
		if len(reqs) == 0 {
			return nil, 0
		}
		return checkOp(check, reqs, true, wantAllow), uint64(len(reqs))
	}
}

// controlPlane is a running `talos serve`.
type controlPlane struct {
	proc    *proc
	http    string // base URL
	grpc    string // address
	metrics string // base URL
	admin   *adminClient
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sqliteDSN returns a DSN for a fresh SQLite database that fl removes.
func sqliteDSN(fl *fleet) (string, error) {
	dir, err := os.MkdirTemp("", "talos-bench-db-")
	if err != nil {
		return "", err
	}
	fl.add(func() error { return os.RemoveAll(dir) })
	return "sqlite://" + filepath.Join(dir, "talos.db"), nil
}

// postgresDSN creates a database of its own on the server of admin and
// returns its DSN; fl drops it.
func postgresDSN(ctx context.Context, fl *fleet, admin string) (string, error) {
	name := "talos_bench_" + randomHex(6)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	fl.add(func() error {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(dctx, admin)
		if err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		defer c.Close(dctx)
		if _, err := c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	})
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// analyze refreshes PostgreSQL's statistics after a bulk load, as pgbench
// does after its own: a steady-state server has statistics, a freshly
// migrated and filled one does not until autovacuum gets to it.
func analyze(ctx context.Context, dsn string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// startControlPlane runs `talos serve` on dsn.
func (r *runner) startControlPlane(ctx context.Context, fl *fleet, dsn string, extra ...string) (*controlPlane, error) {
	return r.startNamedControlPlane(ctx, fl, "control plane", dsn, extra...)
}

// startNamedControlPlane is startControlPlane for a process called name.
func (r *runner) startNamedControlPlane(ctx context.Context, fl *fleet, name, dsn string, extra ...string) (*controlPlane, error) {
	env := childEnv(append([]string{
		"TALOS_SERVE_HTTP_HOST=127.0.0.1", "TALOS_SERVE_HTTP_PORT=0",
		"TALOS_SERVE_GRPC_HOST=127.0.0.1", "TALOS_SERVE_GRPC_PORT=0",
		"TALOS_SERVE_METRICS_HOST=127.0.0.1", "TALOS_SERVE_METRICS_PORT=0",
		"TALOS_CREDENTIALS_ISSUER=https://talos.bench.invalid",
		"TALOS_SECRETS_HMAC_CURRENT=" + randomHex(32),
		"TALOS_DB_DSN=" + dsn,
		"TALOS_DB_AUTO_MIGRATE=true",
	}, extra...)...)
	p, err := fl.start(ctx, name, r.o.talosBin, []string{"serve"}, env)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{proc: p}
	for _, a := range []struct {
		msg  string
		dst  *string
		http bool
	}{{msgHTTP, &cp.http, true}, {msgGRPC, &cp.grpc, false}, {msgMetrics, &cp.metrics, true}} {
		addr, err := p.waitAddr(ctx, a.msg)
		if err != nil {
			return nil, err
		}
		*a.dst = addr
		if a.http {
			*a.dst = "http://" + addr
		}
	}
	cp.admin = newAdminClient(cp.http, setupConcurrency)
	fl.add(func() error { cp.admin.hc.CloseIdleConnections(); return nil })
	return cp, nil
}

// sidecarProc is a running `talos proxy`.
type sidecarProc struct {
	proc    *proc
	http    string // base URL of HTTP authorization
	metrics string // base URL
	check   *checkClient
	hc      *http.Client
}

// startSidecar runs `talos proxy` in front of the control plane's gRPC
// address upstream. Verdicts are cached for 10 minutes unless extra says
// otherwise, so that no run sees its cached keys expire. Checks get 2s
// instead of the 200ms proxy.check_timeout: the harness measures how long
// a miss takes on a loaded machine; a sidecar in front of Envoy denies at
// the bound instead (docs/sidecar.md).
func (r *runner) startSidecar(ctx context.Context, fl *fleet, name, upstream string, extra ...string) (*sidecarProc, error) {
	env := childEnv(append([]string{
		"TALOS_PROXY_UPSTREAM=" + upstream,
		"TALOS_PROXY_EXTAUTHZ_HOST=127.0.0.1", "TALOS_PROXY_EXTAUTHZ_PORT=0",
		"TALOS_PROXY_HTTP_HOST=127.0.0.1", "TALOS_PROXY_HTTP_PORT=0",
		"TALOS_PROXY_METRICS_HOST=127.0.0.1", "TALOS_PROXY_METRICS_PORT=0",
		"TALOS_PROXY_CACHE_TTL=10m", "TALOS_PROXY_CHECK_TIMEOUT=2s",
	}, extra...)...)
	p, err := fl.start(ctx, name, r.o.talosBin, []string{"proxy"}, env)
	if err != nil {
		return nil, err
	}
	ga, err := p.waitAddr(ctx, msgExtAuthz)
	if err != nil {
		return nil, err
	}
	ha, err := p.waitAddr(ctx, msgProxyHTTP)
	if err != nil {
		return nil, err
	}
	ma, err := p.waitAddr(ctx, msgProxyMetrics)
	if err != nil {
		return nil, err
	}
	cc, err := dialCheck(ctx, ga, r.o.conns)
	if err != nil {
		return nil, err
	}
	sc := &sidecarProc{proc: p, http: "http://" + ha, metrics: "http://" + ma, check: cc, hc: newHTTPClient(r.openWorkers())}
	fl.add(func() error { cc.Close(); sc.hc.CloseIdleConnections(); return nil })
	return sc, nil
}

// checkAll checks every request once through c (a closed loop without
// measurement) and fails on the first non-OK answer when wantAllow.
func (r *runner) checkAll(ctx context.Context, c *checkClient, reqs []*authv3.CheckRequest, wantAllow bool) (loadResult, error) {
	res, err := runLoad(ctx, loadSpec{workers: r.o.workers, duration: time.Hour, maxOps: uint64(len(reqs))}, checkOp(c, reqs, true, wantAllow))
	if err == nil && res.errors > 0 {
		err = fmt.Errorf("%d of %d checks failed: %s", res.errors, res.requests, res.firstError)
	}
	return res, err
}

// redisCleanup deletes every key under prefix.
func redisCleanup(addr, prefix string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		defer c.Close()
		it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var batch []string
		for it.Next(ctx) {
			if batch = append(batch, it.Val()); len(batch) == 1000 {
				if err := c.Unlink(ctx, batch...).Err(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("redis cleanup: %w", err)
		}
		if len(batch) > 0 {
			return c.Unlink(ctx, batch...).Err()
		}
		return nil
	}
}

// hostInfo describes the machine.
type hostInfo struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	MemTotal   string `json:"mem_total"`
}

func readHost() hostInfo {
	h := hostInfo{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				h.MemTotal = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}
