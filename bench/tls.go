package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// The cost of TLS (issue 12): the cache-miss path over a plaintext and an
// mTLS upstream (miss-mtls), and an admin verify over plaintext HTTP, HTTPS
// and mTLS (verify-tls). The variants of each run as their own processes
// side by side, and every load point alternates between them in rounds
// (measureAlternating), so that drift of the shared VM falls on all alike.

// The identities of the harness's client certificates (URI SANs).
const (
	sidecarSPIFFE  = "spiffe://talos.bench/ns/bench/sa/sidecar"
	verifierSPIFFE = "spiffe://talos.bench/ns/bench/sa/verifier"
)

// tlsVariant is one transport setting of a TLS scenario and its processes.
type tlsVariant struct {
	name, label  string
	cpEnv, scEnv []string
	// clientTLS is the harness's TLS to the control plane's HTTP API; nil
	// for plaintext.
	clientTLS *tls.Config
	// byCertificate: the verify client sends no token, its certificate is
	// its credential.
	byCertificate bool

	cp     *controlPlane
	sc     *sidecarProc // miss-mtls
	pool   *pool        // miss-mtls: unused keys
	verify *adminClient // verify-tls: the measured client
}

// serverTLSEnv enables TLS on a server listener ("SERVE_GRPC",
// "SERVE_HTTP") with cert; mutual requires a client certificate of p's CA.
func serverTLSEnv(listener string, p *pki, cert leaf, mutual bool) []string {
	pre := "TALOS_" + listener + "_TLS_"
	env := []string{pre + "ENABLED=true", pre + "CERT_FILE=" + cert.certFile, pre + "KEY_FILE=" + cert.keyFile}
	if mutual {
		env = append(env, pre+"CLIENT_CA_FILE="+p.caFile, pre+"CLIENT_AUTH=require")
	}
	return env
}

// identityEnv grants role to certificates whose URI SAN is uri.
func identityEnv(uri, role string) string {
	b, _ := json.Marshal([]map[string]string{{"uri_san": uri, "role": role}})
	return "TALOS_SERVE_ADMIN_AUTH_IDENTITIES=" + string(b)
}

// startVariants starts each variant's processes, all at once (start gets
// the outer context: the processes live as long as it).
func startVariants(vs []*tlsVariant, start func(v *tlsVariant) error) error {
	var g errgroup.Group
	for _, v := range vs {
		g.Go(func() error {
			if err := start(v); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// tlsSpec is the load of a point of a TLS scenario: the closed loop (rate
// 0) or an open loop.
func (r *runner) tlsSpec(rate float64, warm bool) loadSpec {
	s := r.closedSpec(warm, 0)
	if rate > 0 {
		s = r.openSpec(rate, warm, 0)
	}
	s.duration = r.tlsDuration()
	return s
}

// tlsDuration is the measured time of a point of a TLS scenario.
func (r *runner) tlsDuration() time.Duration {
	if d := r.o.sizes.tlsDuration; d > 0 {
		return d
	}
	return r.o.duration
}

// runMissMTLS: the cache-miss path, plaintext and mTLS upstream.
func runMissMTLS(ctx context.Context, r *runner, fl *fleet, rep *report) error {
	p, err := newPKI(fl)
	if err != nil {
		return err
	}
	srv, err := p.serverLeaf("control-plane")
	if err != nil {
		return err
	}
	side, err := p.clientLeaf("sidecar", sidecarSPIFFE)
	if err != nil {
		return err
	}
	token := randomHex(32)
	vs := []*tlsVariant{
		{
			name: "plaintext", label: "plaintext upstream, sidecar token",
			cpEnv: []string{"TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS=" + token},
			scEnv: []string{"TALOS_PROXY_UPSTREAM_TOKEN=" + token},
		},
		{
			name: "mTLS", label: "mTLS upstream, certificate identity",
			cpEnv: append(serverTLSEnv("SERVE_GRPC", p, srv, true), identityEnv(sidecarSPIFFE, "sidecar")),
			scEnv: []string{
				"TALOS_PROXY_UPSTREAM_TLS_ENABLED=true", "TALOS_PROXY_UPSTREAM_TLS_CA_FILE=" + p.caFile,
				"TALOS_PROXY_UPSTREAM_TLS_CERT_FILE=" + side.certFile, "TALOS_PROXY_UPSTREAM_TLS_KEY_FILE=" + side.keyFile,
			},
		},
	}
	if err := startVariants(vs, func(v *tlsVariant) error {
		dsn, err := sqliteDSN(fl)
		if err != nil {
			return err
		}
		if v.cp, err = r.startNamedControlPlane(ctx, fl, "control plane ("+v.name+")", dsn, v.cpEnv...); err != nil {
			return err
		}
		v.sc, err = r.startSidecar(ctx, fl, "sidecar ("+v.name+")", v.cp.grpc, v.scEnv...)
		return err
	}); err != nil {
		return err
	}
	if err := p.probeTLS(vs[1].cp.grpc, srv, side, true); err != nil {
		return err
	}

	s, secs := r.o.sizes, r.tlsDuration().Seconds()
	closedN := int(math.Ceil(s.missTLSPerS * secs))
	need := closedN
	for _, rate := range s.missRates {
		need += int(math.Ceil(rate * secs))
	}
	warm := r.o.workers
	for _, v := range vs {
		raw := rawKeys(warm + need)
		if err := v.cp.admin.importAll(ctx, raw); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		// The first checks set up the sidecar's upstream connection (the
		// TLS handshake) and prove the link works: each is an allow.
		if _, err := r.checkAll(ctx, v.sc.check, checkRequests(raw[:warm]), true); err != nil {
			return fmt.Errorf("%s: first checks: %w", v.name, err)
		}
		v.pool = &pool{reqs: checkRequests(raw[warm:])}
	}
	rep.note(fmt.Sprintf("Each control plane got %d imported keys of its own (importedApiKeys:batchCreate); each key is checked exactly once, "+
		"the first %d before the measurement (they open the upstream connection, TLS handshake included).", warm+need, warm))

	rounds := r.rounds()
	comp := &comparison{Against: "plaintext"}
	closedMax := math.Inf(1)
	for _, rate := range append([]float64{0}, s.missRates...) {
		if rate > closedMax {
			for _, v := range vs {
				rep.add(point{Target: targetSidecar, Label: v.label, Transport: "grpc", Mode: "open", TargetRPS: rate,
					Skipped: fmt.Sprintf("above the slower closed-loop maximum (%.0f req/s)", closedMax)})
			}
			continue
		}
		want := closedN
		if rate > 0 {
			want = int(math.Ceil(rate * secs))
		}
		perRound := uint64(math.Ceil(float64(want) / float64(rounds)))
		if rate == 0 {
			delete(r.baselines, baselineKey("grpc", 0)) // measure it afresh, alternating with the sidecars
		}
		bm, skipped, err := r.baselineMeasurement(ctx, "grpc", rate)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		var ms []measurement
		if skipped == nil {
			bm.spec.duration = r.tlsDuration()
			ms = append(ms, bm)
		}
		for _, v := range vs {
			ms = append(ms, measurement{
				target: targetSidecar, label: v.label, transport: "grpc", spec: r.tlsSpec(rate, false),
				procs: []*proc{v.sc.proc, v.cp.proc}, metrics: v.sc.metrics,
				perRound: func() (op, uint64, error) {
					do, n := v.pool.work(v.sc.check, true)(perRound)
					if n == 0 {
						return nil, 0, errors.New("no unused keys left")
					}
					return do, n, nil
				},
			})
		}
		pts, err := r.measureAlternating(ctx, ms, rounds)
		if err != nil {
			return err
		}
		var base point
		if skipped != nil {
			base = *skipped
		} else {
			base, pts = r.keepBaseline(pts[0], "grpc", rate), pts[1:]
			comp.Rows = append(comp.Rows, compareRows("", []string{"no-op"}, []point{base})...)
		}
		rep.addBaseline(base)
		names := make([]string, len(vs))
		for i, v := range vs {
			names[i] = v.name
			pts[i].Baseline, pts[i].Ratio = base.ID, ratioTo(pts[i], base)
			rep.add(pts[i])
			if rate == 0 {
				closedMax = min(closedMax, pts[i].AchievedRPS)
			}
		}
		comp.Rows = append(comp.Rows, compareRows("plaintext", names, pts)...)
	}
	rep.Comparison = comp
	if err := rep.checkSources(targetSidecar, "upstream_calls", 1); err != nil {
		return err
	}
	rep.note(fmt.Sprintf("The no-op, plaintext and mTLS points alternated in %d round(s) per load point, each round with fresh keys. "+
		"Every sidecar check above called the control plane (talos_proxy_upstream_calls_total grew by the requests sent) and was allowed.", rounds))
	rep.note("mTLS: TLS 1.3 between the harness's throwaway CA's certificates (ECDSA P-256, made at run time); before measuring, the harness checked " +
		"that the mTLS control plane's gRPC listener presents its certificate and refuses a client without one. The mTLS sidecar sends no token, " +
		"so its certificate's identity (the URI SAN granted the sidecar role) is what authorizes its calls. The plaintext pair uses a sidecar token, " +
		"so both sides run the control plane's enforced auth rule; the difference is the transport. One long-lived upstream connection per sidecar: " +
		"its handshake is outside the measurement, the per-call cost (encryption, framing) is inside.")
	return nil
}

// runVerifyTLS: an admin verify over plaintext HTTP, HTTPS and mTLS.
func runVerifyTLS(ctx context.Context, r *runner, fl *fleet, rep *report) error {
	p, err := newPKI(fl)
	if err != nil {
		return err
	}
	srv, err := p.serverLeaf("control-plane")
	if err != nil {
		return err
	}
	cli, err := p.clientLeaf("verifier", verifierSPIFFE)
	if err != nil {
		return err
	}
	adminTok, verifierTok := randomHex(32), randomHex(32)
	tokens := fmt.Sprintf(`TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS=[{"token":%q,"role":"admin"},{"token":%q,"role":"verifier"}]`, adminTok, verifierTok)
	vs := []*tlsVariant{
		{name: "plaintext", label: "plaintext HTTP, verifier token", cpEnv: []string{tokens}},
		{
			name: "HTTPS", label: "HTTPS, verifier token",
			cpEnv: append(serverTLSEnv("SERVE_HTTP", p, srv, false), tokens), clientTLS: p.clientConfig(nil),
		},
		{
			name: "mTLS", label: "mTLS, verifier certificate",
			cpEnv:     append(serverTLSEnv("SERVE_HTTP", p, srv, true), tokens, identityEnv(verifierSPIFFE, "verifier")),
			clientTLS: p.clientConfig(&cli), byCertificate: true,
		},
	}
	if err := startVariants(vs, func(v *tlsVariant) error {
		dsn, err := sqliteDSN(fl)
		if err != nil {
			return err
		}
		v.cp, err = r.startNamedControlPlane(ctx, fl, "control plane ("+v.name+")", dsn, v.cpEnv...)
		return err
	}); err != nil {
		return err
	}
	raw := rawKeys(r.o.sizes.verifyKeys)
	for _, v := range vs {
		if v.clientTLS != nil {
			if err := p.probeTLS(strings.TrimPrefix(v.cp.http, "http://"), srv, cli, v.byCertificate); err != nil {
				return err
			}
			v.cp.http = "https://" + strings.TrimPrefix(v.cp.http, "http://")
		}
		// Setup calls (import) as admin; over mTLS with the certificate too,
		// which the listener requires of every client.
		v.cp.admin = &adminClient{base: v.cp.http, hc: newTLSHTTPClient(setupConcurrency, v.clientTLS), token: adminTok}
		v.verify = &adminClient{base: v.cp.http, hc: newTLSHTTPClient(r.openWorkers(), v.clientTLS), token: verifierTok}
		if v.byCertificate {
			v.verify.token = ""
		}
		fl.add(func() error { v.verify.hc.CloseIdleConnections(); return nil })
		if err := v.cp.admin.importAll(ctx, raw); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		if id, err := v.verify.verify(ctx, raw[0]); err != nil || id == "" {
			return fmt.Errorf("%s: the first verify: %w", v.name, errors.Join(err, errors.New("a valid key was reported invalid")))
		}
		// Open every worker's connection now, TLS handshakes included, so
		// that short points measure requests rather than handshakes.
		var g errgroup.Group
		for range r.openWorkers() {
			g.Go(func() error { _, err := v.verify.verify(ctx, raw[0]); return err })
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("%s: opening the connections: %w", v.name, err)
		}
	}
	rep.note(fmt.Sprintf("%d imported keys, the same in each control plane, verified in turn; the control planes run without a verdict cache "+
		"(cache.type noop, the default), so each verify reads SQLite.", len(raw)))

	verifyOp := func(a *adminClient) op {
		return func(ctx context.Context, seq uint64) (int, error) {
			id, err := a.verify(ctx, raw[seq%uint64(len(raw))])
			if err == nil && id == "" {
				err = errors.New("verify: a valid key was reported invalid")
			}
			return 0, err
		}
	}
	rounds := r.rounds()
	comp := &comparison{Against: "plaintext"}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.name
	}
	measure := func(rate float64) ([]point, error) {
		ms := make([]measurement, len(vs))
		for i, v := range vs {
			ms[i] = measurement{target: targetCP, label: v.label, transport: "http", spec: r.tlsSpec(rate, true), do: verifyOp(v.verify), procs: []*proc{v.cp.proc}}
		}
		pts, err := r.measureAlternating(ctx, ms, rounds)
		if err != nil {
			return nil, err
		}
		for _, pt := range pts {
			rep.add(pt)
		}
		comp.Rows = append(comp.Rows, compareRows("plaintext", names, pts)...)
		return pts, nil
	}
	closed, err := measure(0)
	if err != nil {
		return err
	}
	// Latency below saturation: half the plaintext maximum.
	if half := math.Floor(closed[0].AchievedRPS/2/100) * 100; half > 0 {
		if _, err := measure(half); err != nil {
			return err
		}
	}
	rep.Comparison = comp
	rep.note(fmt.Sprintf("The three variants alternated in %d round(s) per load point. HTTP/1.1 keep-alive over TLS 1.3 (no h2, as over plaintext), "+
		"at most %d connections per control plane; the handshakes happen in the warm-up, so the points measure the per-request cost of TLS, "+
		"not the handshake. The load generator's CPU includes the client side of TLS.", rounds, r.openWorkers()))
	rep.note("Before measuring, the harness checked that the HTTPS and mTLS listeners present their certificate and that the mTLS one refuses a client " +
		"without one. All three have admin and verifier bearer tokens configured, so the admin API is enforced on each: the plaintext and HTTPS " +
		"verifies carry the verifier token; the mTLS verifies carry none, their certificate (URI SAN granted the verifier role) is their credential.")
	return nil
}
