// Command bench is Talos's performance harness. It builds `talos`, runs the
// control plane, the sidecar and a no-op ext_authz baseline as separate
// processes on loopback (with the machine's Redis and PostgreSQL), drives
// them with its own closed- and open-loop load generators (HDR histograms,
// coordinated-omission correction), and writes one JSON file per scenario,
// a Markdown summary and PNG plots. Every sidecar figure is also given as a
// ratio to the no-op baseline measured in the same run.
//
// Usage:
//
//	go run ./bench [-scenarios l1-hit,jwt] [-duration 10s] [-quick] [-out dir]
//	               [-pg-dsn postgres://…] [-redis host:port]
//
// See bench/README.md for what each scenario measures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run is main without the process: it dispatches the hidden no-op role or
// runs the benchmark.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == childNoop {
		return runNoop(ctx, args[1:], stderr)
	}
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	_, err = runBench(ctx, opts, stdout)
	return err
}

// options are the harness's settings.
type options struct {
	scenarios []string
	duration  time.Duration // of each measured point
	warmup    time.Duration // before each point that can afford one
	out       string
	pgDSN     string
	redis     string
	quick     bool
	workers   int // closed-loop concurrency
	conns     int // gRPC connections
	rates     []float64
	httpRates []float64
	talosBin  string // prebuilt talos binary; "" builds one
	self      string // executable that plays the no-op role; "" is this one
	sizes     sizes
}

// sizes are the key counts of the scenarios.
type sizes struct {
	hotKeys     int   // L1-hit hot set (keys and tokens)
	l2Keys      int   // keys cycled through the Redis-hit sidecar
	missClosed  int   // unique keys for a closed-loop miss run
	jwtClosed   int   // unique tokens for a closed-loop run
	mixedKeys   int   // keys verified and derived from in the mixed profile
	memoryKeys  []int // L1 fill steps of the memory scenario
	memoryProbe int   // keys re-checked to see what the L1 kept
	memoryWarm  int   // keys checked before the memory baseline is read
	revocations int   // keys revoked in the revocation scenario
	revokeWait  time.Duration
	missRates   []float64
	jwtRates    []float64
	midRates    []float64
	// missTLSPerS sizes the closed loops of miss-mtls: keys for this many
	// checks a second over -duration, per variant.
	missTLSPerS float64
	verifyKeys  int // keys cycled through the admin verifies of verify-tls
	// tlsDuration, when set, replaces -duration in the TLS scenarios (the
	// smoke run keeps their six points each short).
	tlsDuration time.Duration
}

var fullSizes = sizes{
	hotKeys: 16, l2Keys: 40_000, missClosed: 20_000, jwtClosed: 50_000, mixedKeys: 1_000,
	memoryKeys: []int{50_000, 100_000}, memoryProbe: 2_000, memoryWarm: 1_000, revocations: 20, revokeWait: 3 * time.Second,
	missRates: []float64{1000}, jwtRates: []float64{1000}, midRates: []float64{1000, 5000},
	missTLSPerS: 8000, verifyKeys: 1_000,
}

var quickSizes = sizes{
	hotKeys: 4, l2Keys: 200, missClosed: 300, jwtClosed: 300, mixedKeys: 20,
	memoryKeys: []int{200, 400}, memoryProbe: 100, memoryWarm: 50, revocations: 2, revokeWait: 500 * time.Millisecond,
	missRates: []float64{200}, jwtRates: []float64{200}, midRates: []float64{500},
	missTLSPerS: 1000, verifyKeys: 20,
}

// scenarioNames lists every scenario in run order.
var scenarioNames = []string{"l1-hit", "l1-hit-ratelimited", "l2-redis", "miss-sqlite", "miss-postgres", "miss-mtls", "jwt", "mixed", "verify-tls", "revocation", "memory"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var scen, rates, httpRates string
	fs.StringVar(&scen, "scenarios", strings.Join(scenarioNames, ","), "comma-separated scenarios to run: "+strings.Join(scenarioNames, ", "))
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each point")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded warm-up before each point that reuses keys")
	fs.StringVar(&o.out, "out", "", "results directory (default: bench/results in the module)")
	fs.StringVar(&o.pgDSN, "pg-dsn", os.Getenv("TALOS_TEST_POSTGRES_DSN"), "PostgreSQL DSN of a database to create benchmark databases from (default $TALOS_TEST_POSTGRES_DSN); empty skips the PostgreSQL scenarios")
	fs.StringVar(&o.redis, "redis", os.Getenv("TALOS_TEST_REDIS_ADDR"), "Redis host:port (default $TALOS_TEST_REDIS_ADDR); empty skips the Redis scenario")
	fs.BoolVar(&o.quick, "quick", false, "smoke mode: short points and tiny key counts (durations 300ms unless set)")
	fs.IntVar(&o.workers, "workers", 32, "closed-loop concurrency (requests in flight)")
	fs.IntVar(&o.conns, "conns", 2, "gRPC connections to each ext_authz server (Envoy opens one per worker thread)")
	fs.StringVar(&rates, "rates", "1000,5000,10000,20000", "open-loop rates (req/s) of the L1-hit gRPC runs")
	fs.StringVar(&httpRates, "http-rates", "1000,5000", "open-loop rates (req/s) of the L1-hit HTTP runs")
	fs.StringVar(&o.talosBin, "talos", "", "use this talos binary instead of building ./cmd/talos")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.sizes = fullSizes
	if o.quick {
		o.sizes = quickSizes
		if !set["duration"] {
			o.duration = 300 * time.Millisecond
		}
		if !set["warmup"] {
			o.warmup = 100 * time.Millisecond
		}
		if !set["rates"] {
			rates = "500,2000"
		}
		if !set["http-rates"] {
			httpRates = "500"
		}
	}
	for s := range strings.SplitSeq(scen, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(scenarioNames, s) {
			return o, fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(scenarioNames, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	var err error
	if o.rates, err = parseRates(rates); err != nil {
		return o, fmt.Errorf("-rates: %w", err)
	}
	if o.httpRates, err = parseRates(httpRates); err != nil {
		return o, fmt.Errorf("-http-rates: %w", err)
	}
	if o.workers < 1 || o.conns < 1 || o.duration <= 0 || o.warmup < 0 {
		return o, errors.New("-workers, -conns and -duration must be positive")
	}
	return o, nil
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the talos module")
	}
	return filepath.Dir(gomod), nil
}

// buildTalos builds ./cmd/talos into dir.
func buildTalos(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "talos")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/talos")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/talos: %w\n%s", err, out)
	}
	return bin, nil
}

// runBench runs the selected scenarios and writes the reports. It returns
// the reports even when some scenario failed (the error then says which).
func runBench(ctx context.Context, o options, progress io.Writer) ([]*report, error) {
	if o.out == "" || o.talosBin == "" {
		root, err := moduleRoot(ctx)
		if err != nil {
			return nil, err
		}
		if o.out == "" {
			o.out = filepath.Join(root, "bench", "results")
		}
		if o.talosBin == "" {
			tmp, err := os.MkdirTemp("", "talos-bench-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(tmp)
			fmt.Fprintln(progress, "building ./cmd/talos …")
			if o.talosBin, err = buildTalos(ctx, root, tmp); err != nil {
				return nil, err
			}
		}
	}
	if o.self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.self = self
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	r := newRunner(o, progress)
	defer r.close()
	var reps []*report
	var failed []string
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		rep := r.runScenario(ctx, name)
		reps = append(reps, rep)
		if rep.failed() {
			failed = append(failed, name)
		}
		if err := writeJSON(o.out, rep); err != nil {
			return reps, err
		}
	}
	if err := writeSummary(o.out, r, reps); err != nil {
		return reps, err
	}
	fmt.Fprintf(progress, "results in %s\n", o.out)
	if err := ctx.Err(); err != nil {
		return reps, err
	}
	if len(failed) > 0 {
		return reps, fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return reps, nil
}
