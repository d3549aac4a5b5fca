package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Log messages that announce a bound address, as {"msg":…,"addr":…} JSON
// lines on stderr. The no-op baseline prints the sidecar's messages.
const (
	msgHTTP          = "HTTP server started"
	msgGRPC          = "gRPC server started"
	msgMetrics       = "Metrics server started"
	msgExtAuthz      = "ext_authz server started"
	msgProxyHTTP     = "Proxy HTTP server started"
	msgProxyMetrics  = "Proxy metrics server started"
	startTimeout     = 90 * time.Second
	stopTimeout      = 15 * time.Second
	tailLines        = 30
	clockTicksPerSec = 100 // USER_HZ: 100 on every Linux ABI Go supports
)

// proc is one child process: the talos binary, or this harness in its
// no-op baseline role. It dies with the harness (SIGKILL on parent death)
// and with the context it was started under (SIGTERM, then SIGKILL after
// stopTimeout). Its methods are safe for concurrent use.
type proc struct {
	name   string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	exited chan struct{} // closed once the process was reaped

	mu      sync.Mutex
	addrs   map[string]string // log message -> address
	tail    []string          // the last tailLines lines of stderr
	changed chan struct{}     // closed and replaced when addrs changes
	waitErr error             // set before exited is closed
}

// startProc runs bin with args and env (env replaces the environment).
func startProc(ctx context.Context, name, bin string, args, env []string) (*proc, error) {
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopTimeout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, cancel: cancel, exited: make(chan struct{}), addrs: map[string]string{}, changed: make(chan struct{})}
	go p.read(stderr)
	return p, nil
}

// read follows stderr until it closes, then reaps the process.
func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m struct{ Msg, Addr string }
		isAddr := strings.Contains(line, `"addr"`) && json.Unmarshal([]byte(line), &m) == nil && m.Addr != ""
		p.mu.Lock()
		if len(p.tail) == tailLines {
			p.tail = append(p.tail[:0], p.tail[1:]...)
		}
		p.tail = append(p.tail, line)
		if isAddr {
			p.addrs[m.Msg] = m.Addr
			close(p.changed)
			p.changed = make(chan struct{})
		}
		p.mu.Unlock()
	}
	// A line over 1 MiB stops the scanner: keep draining so the child
	// never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
	err := p.cmd.Wait()
	p.mu.Lock()
	p.waitErr = err
	p.mu.Unlock()
	close(p.exited)
}

// waitAddr waits until the process has logged msg with an address, and
// returns the address. It fails when the process exits first or nothing
// came within startTimeout.
func (p *proc) waitAddr(ctx context.Context, msg string) (string, error) {
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		addr, ch := p.addrs[msg], p.changed
		p.mu.Unlock()
		if addr != "" {
			return addr, nil
		}
		select {
		case <-ch:
		case <-p.exited:
			return "", fmt.Errorf("%s exited before logging %q: %w\n%s", p.name, msg, p.err(), p.logTail())
		case <-timer.C:
			return "", fmt.Errorf("%s did not log %q within %s\n%s", p.name, msg, startTimeout, p.logTail())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// alive reports an error when the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err(), p.logTail())
	default:
		return nil
	}
}

func (p *proc) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

func (p *proc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "last log lines of " + p.name + ":\n  " + strings.Join(p.tail, "\n  ")
}

// stop sends SIGTERM, waits for the process (SIGKILL after stopTimeout) and
// reports an unclean exit.
func (p *proc) stop() error {
	p.cancel()
	<-p.exited
	err := p.err()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() && ee.ExitCode() != 0 {
		return fmt.Errorf("%s exited with code %d\n%s", p.name, ee.ExitCode(), p.logTail())
	}
	return nil
}

// rss returns the resident set size of the process (VmRSS) in bytes.
func (p *proc) rss() (int64, error) { return readRSS(p.cmd.Process.Pid) }

// cpu returns the CPU time (user + system) the process has used.
func (p *proc) cpu() (time.Duration, error) { return readCPU(p.cmd.Process.Pid) }

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses: the
	// fields that follow start after its last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state), so utime (field 14) and stime (15) are
	// f[11] and f[12].
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicksPerSec, nil
}

// otherCPU names, in a point's CPU, the CPU time the whole machine spent
// outside the processes the point measures: the harness's idle processes,
// the databases, the kernel, and anything else running on the machine
// (another job on a shared VM makes the point's figures low).
const otherCPU = "other processes"

// machineBusy returns the CPU time the machine has spent busy (all CPUs,
// everything but idle and I/O wait), from /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal (guest time is
	// counted in user).
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSec, nil
}

// selfCPU returns the CPU time this process (the load generator) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fleet is the set of processes and resources of one scenario, released in
// reverse order by close.
type fleet struct {
	mu      sync.Mutex
	closers []func() error
}

func (f *fleet) add(c func() error) {
	f.mu.Lock()
	f.closers = append(f.closers, c)
	f.mu.Unlock()
}

// start starts a process that close stops.
func (f *fleet) start(ctx context.Context, name, bin string, args, env []string) (*proc, error) {
	p, err := startProc(ctx, name, bin, args, env)
	if err != nil {
		return nil, err
	}
	f.add(p.stop)
	return p, nil
}

func (f *fleet) close() error {
	f.mu.Lock()
	cs := f.closers
	f.closers = nil
	f.mu.Unlock()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i]())
	}
	return errors.Join(errs...)
}

// childEnv is the environment of a child process: ours without any TALOS_*
// variable (so a developer's settings cannot change what is measured), plus
// extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TALOS_") && !strings.HasPrefix(kv, childRoleEnv+"=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
