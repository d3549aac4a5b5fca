package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// report is the result of one scenario, written as
// <date>-<scenario>.json.
type report struct {
	Scenario   string      `json:"scenario"`
	Title      string      `json:"title"`
	About      string      `json:"about"`
	Date       string      `json:"date"`
	Status     string      `json:"status"` // "ok", "skipped: …", "not yet: …", "failed: …"
	ElapsedS   float64     `json:"elapsed_s"`
	Host       hostInfo    `json:"host"`
	Settings   settings    `json:"settings"`
	Points     []point     `json:"points"`
	Goals      []goal      `json:"goals,omitempty"`
	Notes      []string    `json:"notes,omitempty"`
	Published  *published  `json:"published,omitempty"`
	Revocation *revocation `json:"revocation,omitempty"`
	Memory     *memory     `json:"memory,omitempty"`
	Comparison *comparison `json:"comparison,omitempty"`
}

type settings struct {
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Workers     int     `json:"closed_loop_workers"`
	Conns       int     `json:"grpc_connections"`
	OpenWorkers int     `json:"open_loop_max_in_flight"`
	Quick       bool    `json:"quick"`
}

// point is one measured (or skipped) load point.
type point struct {
	// ID names a baseline point that others refer to.
	ID          string  `json:"id,omitempty"`
	Target      string  `json:"target"`
	Label       string  `json:"label"`
	Transport   string  `json:"transport"`
	Mode        string  `json:"mode"` // "closed" or "open"
	TargetRPS   float64 `json:"target_rps,omitempty"`
	AchievedRPS float64 `json:"achieved_rps"`
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	DurationS   float64 `json:"duration_s"`
	InFlight    int     `json:"max_in_flight,omitempty"`
	Latency     latency `json:"latency_ms"`
	// ServiceTime of an open-loop point is measured from the actual send,
	// without the coordinated-omission correction: the gap to Latency is
	// time spent queued behind the schedule (in the load generator).
	ServiceTime *latency `json:"service_time_ms,omitempty"`
	// Classes break a mixed load down by request class.
	Classes map[string]classResult `json:"classes,omitempty"`
	// CPUCores is CPU time over wall time per process during the point.
	CPUCores map[string]float64 `json:"cpu_cores,omitempty"`
	RSSBytes int64              `json:"rss_bytes,omitempty"`
	// Sources are the sidecar's counters' deltas over the point (warm-up
	// included): where its verdicts came from.
	Sources    map[string]float64 `json:"sources,omitempty"`
	Baseline   string             `json:"baseline,omitempty"`
	Ratio      *ratio             `json:"ratio_to_baseline,omitempty"`
	Skipped    string             `json:"skipped,omitempty"`
	Saturated  bool               `json:"saturated,omitempty"`
	Exhausted  bool               `json:"bounded_by_keys,omitempty"`
	MeasuredIn string             `json:"measured_in,omitempty"`
}

// latency in milliseconds.
type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type classResult struct {
	Requests uint64  `json:"requests"`
	RPS      float64 `json:"rps"`
	Latency  latency `json:"latency_ms"`
}

// ratio compares a point with its baseline: > 1 means more throughput or
// more latency than the baseline.
type ratio struct {
	Throughput float64 `json:"throughput,omitempty"`
	P50        float64 `json:"p50,omitempty"`
	P99        float64 `json:"p99,omitempty"`
}

type goal struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// published is a comparison with Ory Talos's published figures.
type published struct {
	Source          string  `json:"source"`
	Hardware        string  `json:"their_hardware"`
	OurHardware     string  `json:"our_hardware"`
	TotalRPS        float64 `json:"their_total_rps"`
	VerifyP95Ms     float64 `json:"their_verify_p95_ms"`
	VerifyP99Ms     float64 `json:"their_verify_p99_ms"`
	OursTotalRPS    float64 `json:"our_total_rps"`
	OursVerifyP95Ms float64 `json:"our_verify_p95_ms"`
	OursVerifyP99Ms float64 `json:"our_verify_p99_ms"`
	Note            string  `json:"note"`
}

type revocation struct {
	Supported     bool      `json:"supported"`
	Keys          int       `json:"keys"`
	WaitedS       float64   `json:"waited_s"`
	CacheTTL      string    `json:"cache_ttl"`
	PropagationMs []float64 `json:"propagation_ms,omitempty"`
	P50Ms         float64   `json:"p50_ms,omitempty"`
	MaxMs         float64   `json:"max_ms,omitempty"`
}

type memory struct {
	Kind              string       `json:"kind"`
	BudgetBytes       int64        `json:"l1_budget_bytes"`
	Steps             []memoryStep `json:"steps"`
	Probe             int          `json:"probe_keys"`
	Retained          float64      `json:"retained_fraction"`
	BytesPerKeyRSS    float64      `json:"bytes_per_key_rss"`
	BytesPerKeyHeap   float64      `json:"bytes_per_key_heap_inuse"`
	BigBudgetBytes    int64        `json:"big_l1_budget_bytes"`
	BigAtRest         *memoryStep  `json:"big_budget_at_rest"`
	Extrapolated      *memoryStep  `json:"extrapolated_1m"`
	ExtrapolatedLabel string       `json:"extrapolated_label"`
}

// comparison sets the variants of one workload side by side, each against
// the variant named Against at the same load point (the TLS scenarios:
// against plaintext).
type comparison struct {
	Against string          `json:"against"`
	Rows    []comparisonRow `json:"rows"`
}

type comparisonRow struct {
	Point       string  `json:"point"` // "closed max", "open 1000/s"
	Variant     string  `json:"variant"`
	Target      string  `json:"target"`
	AchievedRPS float64 `json:"achieved_rps"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	// ServerCPUus is the CPU time of the processes serving the point (not
	// the load generator, nor the other processes) per request, in
	// microseconds.
	ServerCPUus float64 `json:"server_cpu_us_per_request"`
	// Ratio is to the Against row of the same point; nil for that row and
	// for the no-op.
	Ratio *ratio `json:"ratio,omitempty"`
}

// compareRows returns one row per point of pts, which were measured at the
// same load point; the first one whose variant is against is the reference.
func compareRows(against string, variants []string, pts []point) []comparisonRow {
	var ref *point
	for i := range pts {
		if variants[i] == against {
			ref = &pts[i]
			break
		}
	}
	rows := make([]comparisonRow, len(pts))
	for i, p := range pts {
		var cpu float64
		for name, cores := range p.CPUCores {
			if name != "load generator" && name != otherCPU {
				cpu += cores
			}
		}
		row := comparisonRow{
			Point: p.Mode + " " + rateText(p.TargetRPS), Variant: variants[i], Target: p.Target,
			AchievedRPS: p.AchievedRPS, P50: p.Latency.P50, P99: p.Latency.P99,
		}
		if p.AchievedRPS > 0 {
			row.ServerCPUus = math.Round(cpu/p.AchievedRPS*1e7) / 10
		}
		if ref != nil && variants[i] != against && p.Target != targetNoop {
			row.Ratio = ratioTo(p, *ref)
		}
		rows[i] = row
	}
	return rows
}

func comparisonTable(c *comparison) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| point | variant | req/s | p50 | p99 | server CPU µs/req | ×%[1]s req/s | ×%[1]s p50 | ×%[1]s p99 |\n", c.Against)
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range c.Rows {
		rps, p50, p99 := "–", "–", "–"
		if q := r.Ratio; q != nil {
			p50, p99 = fmt.Sprintf("%.2f×", q.P50), fmt.Sprintf("%.2f×", q.P99)
			if q.Throughput > 0 {
				rps = fmt.Sprintf("%.2f×", q.Throughput)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.1f | %s | %s | %s |\n", r.Point, r.Variant, thousands(r.AchievedRPS),
			msText(r.P50), msText(r.P99), r.ServerCPUus, rps, p50, p99)
	}
	b.WriteString("\n")
	return b.String()
}

type memoryStep struct {
	Keys           int   `json:"keys"`
	RSSBytes       int64 `json:"rss_bytes"`
	HeapInuseBytes int64 `json:"heap_inuse_bytes"`
}

func (r *report) failed() bool { return strings.HasPrefix(r.Status, "failed") }

func (r *report) note(s string) { r.Notes = append(r.Notes, s) }

func (r *report) add(p point) { r.Points = append(r.Points, p) }

// addBaseline adds a baseline point once.
func (r *report) addBaseline(b point) {
	for _, p := range r.Points {
		if p.ID != "" && p.ID == b.ID {
			return
		}
	}
	r.Points = append(r.Points, b)
}

func (r *report) baselineOf(p point) point {
	for _, b := range r.Points {
		if b.ID != "" && b.ID == p.Baseline {
			return b
		}
	}
	return point{}
}

// pair returns the first measured sidecar point of transport at rate and
// its baseline.
func (r *report) pair(transport string, rate float64) (point, point, bool) {
	for _, p := range r.Points {
		if p.Target == targetSidecar && p.Transport == transport && p.TargetRPS == rate && p.Skipped == "" && p.Baseline != "" {
			b := r.baselineOf(p)
			return p, b, b.Skipped == "" && b.AchievedRPS > 0
		}
	}
	return point{}, point{}, false
}

// checkSources fails unless counter source of every measured target point
// grew by at least frac of its requests.
func (r *report) checkSources(target, source string, frac float64) error {
	for _, p := range r.Points {
		if p.Target != target || p.Skipped != "" {
			continue
		}
		if got, want := p.Sources[source], frac*float64(p.sent()); got < want {
			return fmt.Errorf("%s %s %s at %s: %s grew by %.0f for %d requests", p.Target, p.Transport, p.Mode, rateText(p.TargetRPS), source, got, p.sent())
		}
	}
	return nil
}

// sent is the number of requests recorded (answered or failed).
func (p point) sent() uint64 { return p.Requests }

func latencyOf(h *hdrhistogram.Histogram) latency {
	if h.TotalCount() == 0 {
		return latency{}
	}
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P95: ms(h.ValueAtQuantile(95)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: round3(h.Mean() / 1000),
	}
}

func pointFrom(m measurement, res loadResult) point {
	p := point{
		Target: m.target, Label: m.label, Transport: m.transport, Mode: modeOf(m.spec.rate), TargetRPS: m.spec.rate,
		AchievedRPS: math.Round(res.rps()), Requests: res.requests, Errors: res.errors, FirstError: res.firstError,
		DurationS: round3(res.elapsed.Seconds()), InFlight: m.spec.workers, Latency: latencyOf(res.hist),
		Exhausted: res.exhausted,
	}
	if m.spec.rate > 0 {
		st := latencyOf(res.service)
		p.ServiceTime = &st
		p.Saturated = p.AchievedRPS < 0.95*m.spec.rate
	}
	if len(m.spec.classes) > 0 {
		p.Classes = map[string]classResult{}
		for i, name := range m.spec.classes {
			p.Classes[name] = classResult{
				Requests: res.classCounts[i], Latency: latencyOf(res.classHists[i]),
				RPS: math.Round(float64(res.classCounts[i]) / max(res.elapsed.Seconds(), 1e-9)),
			}
		}
	}
	return p
}

// ratioTo compares p with baseline b; nil when b was not measured.
func ratioTo(p, b point) *ratio {
	if b.Skipped != "" || b.Latency.P99 == 0 || p.Latency.P99 == 0 {
		return nil
	}
	r := &ratio{P50: round3(p.Latency.P50 / b.Latency.P50), P99: round3(p.Latency.P99 / b.Latency.P99)}
	if p.Mode == "closed" && b.AchievedRPS > 0 {
		r.Throughput = round3(p.AchievedRPS / b.AchievedRPS)
	}
	return r
}

// writeJSON writes <date>-<scenario>.json.
func writeJSON(dir string, r *report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, r.Date+"-"+r.Scenario+".json"), append(b, '\n'), 0o644)
}

// writeSummary writes <date>-summary.md and the plots it embeds.
func writeSummary(dir string, rn *runner, reps []*report) error {
	var b strings.Builder
	date := rn.date
	h := rn.host
	o := rn.o
	fmt.Fprintf(&b, "# Talos benchmark, %s\n\n", date)
	fmt.Fprintf(&b, "Machine: %d vCPU (%s), %s RAM, %s, %s, GOMAXPROCS %d. ", h.CPUs, h.CPUModel, h.MemTotal, h.Kernel, h.Go, h.GOMAXPROCS)
	b.WriteString("The load generator, the control plane, the sidecar, the no-op baseline, Redis and PostgreSQL share these cores over loopback; nothing is pinned, so every figure includes the load generator's own CPU use.\n\n")
	fmt.Fprintf(&b, "Each point runs %s", o.duration)
	if o.warmup > 0 {
		fmt.Fprintf(&b, " after %s of unrecorded warm-up (none where each key is used once)", o.warmup)
	}
	fmt.Fprintf(&b, ". Closed loops keep %d requests in flight (gRPC: over %d HTTP/2 connections, as Envoy opens one per worker thread; HTTP: one keep-alive connection each). ", o.workers, o.conns)
	fmt.Fprintf(&b, "Open loops send at a fixed rate with up to %d requests in flight and measure each latency from the request's intended send time (coordinated-omission correction); rates above the closed-loop maximum are skipped. ", rn.openWorkers())
	b.WriteString("Latencies are in milliseconds, from HDR histograms. Ratios compare with the no-op baseline of the same transport and mode measured in the same run (> 1: more throughput or more latency than the no-op).\n\n")
	if o.quick {
		b.WriteString("**Smoke mode (-quick): durations and key counts are tiny; these numbers only show that the harness works.**\n\n")
	}

	var goals []goal
	for _, r := range reps {
		goals = append(goals, r.Goals...)
	}
	if len(goals) > 0 {
		b.WriteString("## Goals\n\n| goal | target | measured | verdict |\n|---|---|---|---|\n")
		for _, g := range goals {
			v := "**not met**"
			if g.Met {
				v = "met"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Target, g.Measured, v)
		}
		b.WriteString("\n")
	}

	b.WriteString("## Results\n\n")
	b.WriteString(resultsTable(reps))
	b.WriteString("\n")

	plots, err := writePlots(dir, date, reps)
	if err != nil {
		return err
	}
	if p, ok := plots["throughput"]; ok {
		fmt.Fprintf(&b, "![Closed-loop throughput per scenario](%s)\n\n", p)
	}

	b.WriteString("## Scenarios\n\n")
	for _, r := range reps {
		fmt.Fprintf(&b, "### %s: %s\n\n%s\n\n", r.Scenario, r.Title, r.About)
		if r.Status != "ok" {
			fmt.Fprintf(&b, "**Status: %s**\n\n", r.Status)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if len(r.Notes) > 0 {
			b.WriteString("\n")
		}
		if pub := r.Published; pub != nil {
			b.WriteString(publishedTable(r, pub))
		}
		if m := r.Memory; m != nil {
			b.WriteString(memoryTable(m))
		}
		if c := r.Comparison; c != nil {
			b.WriteString(comparisonTable(c))
		}
		for _, t := range []string{"grpc", "http"} {
			if p, ok := plots[r.Scenario+"-"+t]; ok {
				fmt.Fprintf(&b, "![%s %s latency over load](%s)\n\n", r.Scenario, transportName(t), p)
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, date+"-summary.md"), []byte(b.String()), 0o644)
}

// resultsTable renders every point of reps as one Markdown table.
func resultsTable(reps []*report) string {
	var b strings.Builder
	b.WriteString("| scenario | mode | target rps | achieved rps | p50 | p90 | p99 | p99.9 | errors | ratio to baseline | CPU cores |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n")
	for _, r := range reps {
		if len(r.Points) == 0 {
			status := r.Status
			if v := r.Revocation; v != nil && v.Supported {
				status = fmt.Sprintf("push invalidation: denied %s ms (median), at most %s ms after the revoke, %d keys", msText(v.P50Ms), msText(v.MaxMs), len(v.PropagationMs))
			}
			fmt.Fprintf(&b, "| %s | – | – | – | – | – | – | – | – | %s | – |\n", r.Scenario, status)
			continue
		}
		for _, p := range r.Points {
			name := fmt.Sprintf("%s · %s", r.Scenario, p.Target)
			if p.Label != "" {
				name += " · " + p.Label
			}
			if p.MeasuredIn != "" && p.MeasuredIn != r.Scenario {
				name += " (measured in " + p.MeasuredIn + ")"
			}
			mode := transportName(p.Transport) + " " + p.Mode
			target := "max"
			if p.TargetRPS > 0 {
				target = thousands(p.TargetRPS)
			}
			if p.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | %s | skipped | – | – | – | – | – | %s | – |\n", name, mode, target, p.Skipped)
				continue
			}
			achieved := thousands(p.AchievedRPS)
			if p.Saturated {
				achieved += " (saturated)"
			}
			if p.Exhausted {
				achieved += fmt.Sprintf(" (keys ran out after %.1f s)", p.DurationS)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", name, mode, target, achieved,
				msText(p.Latency.P50), msText(p.Latency.P90), msText(p.Latency.P99), msText(p.Latency.P999), p.Errors, ratioText(p), cpuText(p.CPUCores))
		}
	}
	return b.String()
}

func transportName(t string) string {
	if t == "grpc" {
		return "gRPC"
	}
	return "HTTP"
}

func ratioText(p point) string {
	switch {
	case p.Target == targetNoop:
		return "baseline"
	case p.Ratio == nil:
		return "–"
	case p.Target == targetCP:
		return fmt.Sprintf("%.2f× %s", p.Ratio.Throughput, p.Baseline)
	case p.Ratio.Throughput > 0:
		return fmt.Sprintf("%.2f× rps, %.2f× p99", p.Ratio.Throughput, p.Ratio.P99)
	}
	return fmt.Sprintf("%.2f× p50, %.2f× p99", p.Ratio.P50, p.Ratio.P99)
}

func cpuText(c map[string]float64) string {
	short := map[string]string{"load generator": "load", "control plane": "cp", "sidecar": "sidecar", "warming sidecar": "sidecar A", otherCPU: "others"}
	var names []string
	for n := range c {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		// The load generator, then the other processes, last.
		rank := func(n string) int { return map[string]int{"load generator": 1, otherCPU: 2}[n] }
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	var parts []string
	for _, n := range names {
		s := n
		// "control plane (mTLS)" is the cp of its own point.
		if v, ok := short[strings.TrimSuffix(n, suffixOf(n))]; ok {
			s = v
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", s, c[n]))
	}
	return strings.Join(parts, ", ")
}

// suffixOf returns the " (…)" at the end of a process name, or "".
func suffixOf(name string) string {
	if i := strings.LastIndex(name, " ("); i > 0 && strings.HasSuffix(name, ")") {
		return name[i:]
	}
	return ""
}

func msText(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// thousands formats v rounded, with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Round(v))
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func publishedTable(r *report, p *published) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| | Ory Talos, published (%s) | Talos, here (%s) |\n|---|--:|--:|\n", p.Hardware, p.OurHardware)
	fmt.Fprintf(&b, "| total req/s | %s | %s |\n", thousands(p.TotalRPS), thousands(p.OursTotalRPS))
	fmt.Fprintf(&b, "| verify p95 | %.0f ms | %s ms |\n", p.VerifyP95Ms, msText(p.OursVerifyP95Ms))
	fmt.Fprintf(&b, "| verify p99 | %.0f ms | %s ms |\n\n", p.VerifyP99Ms, msText(p.OursVerifyP99Ms))
	fmt.Fprintf(&b, "%s\n\n", p.Note)
	b.WriteString("| point | class | req/s | p50 | p95 | p99 | p99.9 |\n|---|---|--:|--:|--:|--:|--:|\n")
	for _, pt := range r.Points {
		for _, c := range mixedClasses {
			cr, ok := pt.Classes[c]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "| %s %s | %s | %s | %s | %s | %s | %s |\n", pt.Mode, rateText(pt.TargetRPS), c, thousands(cr.RPS),
				msText(cr.Latency.P50), msText(cr.Latency.P95), msText(cr.Latency.P99), msText(cr.Latency.P999))
		}
	}
	b.WriteString("\n")
	return b.String()
}

func memoryTable(m *memory) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Entries: %s; L1 budget %s.\n\n", m.Kind, mib(m.BudgetBytes))
	b.WriteString("| cached keys | sidecar RSS | Go heap in use |\n|--:|--:|--:|\n")
	for _, s := range m.Steps {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", thousands(float64(s.Keys)), mib(s.RSSBytes), mib(s.HeapInuseBytes))
	}
	if r := m.BigAtRest; r != nil {
		fmt.Fprintf(&b, "| 0, L1 budget %s, at rest | %s | %s |\n", mib(m.BigBudgetBytes), mib(r.RSSBytes), mib(r.HeapInuseBytes))
	}
	if e := m.Extrapolated; e != nil {
		fmt.Fprintf(&b, "| %s, L1 budget %s (**extrapolated**) | %s | %s |\n", thousands(float64(e.Keys)), mib(m.BigBudgetBytes), mib(e.RSSBytes), mib(e.HeapInuseBytes))
	}
	fmt.Fprintf(&b, "\nPer cached key: %.0f B of RSS, %.0f B of heap in use. %.1f%% of a %d-key sample were still L1 hits after the fill. The 1M row is %s.\n\n",
		m.BytesPerKeyRSS, m.BytesPerKeyHeap, 100*m.Retained, m.Probe, m.ExtrapolatedLabel)
	return b.String()
}

// writePlots writes the throughput bar chart and one latency-over-load
// chart per scenario and transport that has a series of two points or more,
// and returns their file names by key ("throughput",
// "<scenario>-<transport>").
func writePlots(dir, date string, reps []*report) (map[string]string, error) {
	out := map[string]string{}
	if name, ok, err := throughputPlot(dir, date, reps); err != nil {
		return nil, err
	} else if ok {
		out["throughput"] = name
	}
	for _, r := range reps {
		for _, t := range []string{"grpc", "http"} {
			name, ok, err := latencyPlot(dir, date, r, t)
			if err != nil {
				return nil, err
			}
			if ok {
				out[r.Scenario+"-"+t] = name
			}
		}
	}
	return out, nil
}

// throughputPlot draws the closed-loop throughput of every Talos point next
// to its no-op baseline.
func throughputPlot(dir, date string, reps []*report) (string, bool, error) {
	var names []string
	var talos, noop plotter.Values
	for _, r := range reps {
		for _, p := range r.Points {
			if p.Target == targetNoop || p.Mode != "closed" || p.Skipped != "" {
				continue
			}
			names = append(names, shortName(r.Scenario, p))
			talos = append(talos, p.AchievedRPS)
			b := r.baselineOf(p)
			if b.Target != targetNoop {
				b = point{}
			}
			noop = append(noop, b.AchievedRPS)
		}
	}
	if len(names) == 0 {
		return "", false, nil
	}
	p := plot.New()
	p.Title.Text = "Closed-loop throughput (req/s), " + date
	p.Y.Label.Text = "req/s"
	w := vg.Points(14)
	a, err := plotter.NewBarChart(talos, w)
	if err != nil {
		return "", false, err
	}
	a.Color, a.Offset = plotutil.Color(0), -w/2
	bb, err := plotter.NewBarChart(noop, w)
	if err != nil {
		return "", false, err
	}
	bb.Color, bb.Offset = color.Gray{Y: 170}, w/2
	p.Add(a, bb)
	p.Legend.Add("Talos (sidecar / control plane)", a)
	p.Legend.Add("no-op baseline, same transport", bb)
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = 0, 1.3*max(slices.Max(talos), slices.Max(noop)) // room for the legend
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 5
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	p.Add(plotter.NewGrid())
	name := date + "-throughput.png"
	width := max(6*vg.Inch, vg.Length(len(names))*0.9*vg.Inch)
	return name, true, p.Save(width, 5*vg.Inch, filepath.Join(dir, name))
}

func shortName(scenario string, p point) string {
	s := scenario
	switch {
	case scenario == "l1-hit":
		s += " " + transportName(p.Transport)
	case scenario == "jwt" && strings.HasPrefix(p.Label, "unique"):
		s += " unique"
	case scenario == "jwt":
		s += " repeated"
	case scenario == "miss-mtls" || scenario == "verify-tls":
		// The variant: "mTLS upstream, certificate identity" -> "mTLS upstream".
		v, _, _ := strings.Cut(p.Label, ",")
		s += " " + v
	case scenario == "memory":
		if f := strings.Fields(p.Label); len(f) > 2 {
			s += " fill " + f[2]
		}
	}
	return s
}

// logTicks labels 1, 2, 3 and 5 times each power of ten: plot.LogTicks labels
// only powers of ten, too few over the one or two decades latencies span.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 3, 5} {
			if v := m * math.Pow(10, e); v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ts
}

// latencyPlot draws p50, p99 and p99.9 over the achieved throughput of
// every series of transport in r, both axes log scale: the open-loop
// points, then the closed loop at its maximum as the rightmost point.
func latencyPlot(dir, date string, r *report, transport string) (string, bool, error) {
	type key struct{ target, label string }
	var order []key
	pts := map[key][]point{}
	for _, p := range r.Points {
		if p.Transport != transport || p.Skipped != "" || p.Latency.P50 <= 0 || p.AchievedRPS <= 0 {
			continue
		}
		k := key{p.Target, p.Label}
		if _, ok := pts[k]; !ok {
			order = append(order, k)
		}
		pts[k] = append(pts[k], p)
	}
	most := 0
	for _, k := range order {
		most = max(most, len(pts[k]))
	}
	if most < 2 {
		return "", false, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %s: latency over load, %s", r.Scenario, transportName(transport), date)
	p.X.Label.Text = "achieved req/s (log scale; rightmost point of a series: closed loop)"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = logTicks{}, logTicks{}
	legend := plot.NewLegend()
	legend.Top = true
	quantiles := []struct {
		name string
		get  func(latency) float64
	}{{"p50", func(l latency) float64 { return l.P50 }}, {"p99", func(l latency) float64 { return l.P99 }}, {"p99.9", func(l latency) float64 { return l.P999 }}}
	for i, k := range order {
		slices.SortFunc(pts[k], func(a, b point) int { return cmp.Compare(a.AchievedRPS, b.AchievedRPS) })
		for j, q := range quantiles {
			xys := make(plotter.XYs, len(pts[k]))
			for n, pt := range pts[k] {
				xys[n] = plotter.XY{X: pt.AchievedRPS, Y: math.Max(q.get(pt.Latency), 0.001)}
			}
			l, s, err := plotter.NewLinePoints(xys)
			if err != nil {
				return "", false, err
			}
			c := plotutil.Color(i)
			if k.target == targetNoop {
				c = color.Gray{Y: uint8(60 + 50*j)}
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			l.Color, s.Color = c, c
			l.Width = vg.Points(1.5)
			s.Shape = plotutil.Shape(j)
			p.Add(l, s)
			name := k.target
			if k.target != targetNoop && len(order) > 2 {
				name += " (" + k.label + ")"
			}
			legend.Add(name+" "+q.name, l, s)
		}
	}
	p.Add(plotter.NewGrid())
	name := fmt.Sprintf("%s-%s-%s-latency.png", date, r.Scenario, transport)
	return name, true, savePNG(filepath.Join(dir, name), p, legend, 8*vg.Inch, 3.4*vg.Inch, 5*vg.Inch)
}

// savePNG draws p with legend to its right, so that the legend never hides
// a line.
func savePNG(path string, p *plot.Plot, legend plot.Legend, plotW, legendW, h vg.Length) error {
	img := vgimg.New(plotW+legendW, h)
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, -legendW, 0, 0))
	legend.Draw(draw.Crop(dc, plotW+vg.Points(8), 0, -vg.Points(10), -vg.Points(10)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
