package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/extauthz"
	"github.com/talos-project/talos/pkg/credential"
)

var update = flag.Bool("update", false, "rewrite nginx/nginx.conf and caddy/Caddyfile from their templates")

// The nginx and Caddy configs are templates; the files next to them are their
// renderings with these values, the defaults of a single-host install.
type nginxConf struct {
	User, ErrorLog, PIDFile, TempDir, Listen, SidecarAddr, AppAddr string
}

var nginxExample = nginxConf{
	User:        "www-data",
	ErrorLog:    "/var/log/nginx/error.log",
	PIDFile:     "/run/nginx.pid",
	TempDir:     "/var/lib/nginx",
	Listen:      "8080",
	SidecarAddr: "127.0.0.1:4430",
	AppAddr:     "127.0.0.1:8081",
}

type caddyConf struct {
	Site, SidecarAddr, AppAddr string
}

var caddyExample = caddyConf{
	Site:        "http://:8080",
	SidecarAddr: "127.0.0.1:4430",
	AppAddr:     "127.0.0.1:8081",
}

func render(t testing.TB, tmpl string, data any) []byte {
	t.Helper()
	tp, err := template.ParseFiles(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, data); err != nil {
		t.Fatalf("%s: %v", tmpl, err)
	}
	return b.Bytes()
}

// TestExamplesRendered keeps the example configs in step with their templates.
func TestExamplesRendered(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		tmpl, file string
		data       any
	}{
		{"nginx/nginx.conf.tmpl", "nginx/nginx.conf", nginxExample},
		{"caddy/Caddyfile.tmpl", "caddy/Caddyfile", caddyExample},
	} {
		got := render(t, c.tmpl, c.data)
		if *update {
			if err := os.WriteFile(c.file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Errorf("%s is not the rendering of %s; run go test ./deploy/ -run TestExamplesRendered -update (-file +template):\n%s", c.file, c.tmpl, d)
		}
	}
}

// The credentials the fake Authorizer knows. It behaves like the sidecar's
// pipeline for the cases the proxies must tell apart: a valid key with or
// without scopes, an unknown key, a rate-limited key and an outage.
var testKeys = map[string]extauthz.Verdict{
	"good": {Result: credential.Result{Type: credential.TypeIssued, Tenant: credential.DefaultTenant,
		KeyID: "k1", ActorID: "a1", Scopes: []string{"read"}, Status: credential.StateActive}},
	"noscope": {Result: credential.Result{Type: credential.TypeIssued, Tenant: credential.DefaultTenant,
		KeyID: "k2", ActorID: "a2", Status: credential.StateActive}},
	"limited": {Err: &credential.Error{Kind: credential.ErrRateLimited, Reason: "RATE_LIMITED",
		Message: "rate limit exceeded", RetryAfter: 7 * time.Second}},
	"outage": {Err: fmt.Errorf("upstream: %w", credential.ErrUnavailable)},
	// Attenuated macaroons: limited to paths under /read, and to the host
	// 127.0.0.1 (the host the tests connect to).
	"readonly": {Result: credential.Result{Type: credential.TypeMacaroon, Tenant: credential.DefaultTenant,
		KeyID: "k3", ActorID: "a3", Scopes: []string{"read"}, Status: credential.StateActive,
		Conditions: map[string]string{"path": "/read"}}},
	"localonly": {Result: credential.Result{Type: credential.TypeMacaroon, Tenant: credential.DefaultTenant,
		KeyID: "k4", ActorID: "a4", Status: credential.StateActive,
		Conditions: map[string]string{"host": "127.0.0.1"}}},
}

// fakeAuthorizer answers from testKeys, and NOT_FOUND for every other
// credential and for a known key asked about in another tenant: a proxy that
// let a client choose the tenant would turn a good key into a 401.
func fakeAuthorizer(_ context.Context, p credential.Presented) extauthz.Verdict {
	v, ok := testKeys[p.Credential]
	if !ok || (v.Err == nil && p.Tenant != v.Result.Tenant) {
		return extauthz.Verdict{Err: credential.ErrNotFound, Cache: extauthz.CacheMiss}
	}
	v.Cache = extauthz.CacheHit
	return v
}

// newTestSidecar serves the extauthz HTTP handler, as talos proxy does on
// 4430, on a real listener and returns its address.
func newTestSidecar(t *testing.T) string {
	t.Helper()
	srv, err := extauthz.New(extauthz.AuthorizerFunc(fakeAuthorizer), extauthz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.HTTPHandler())
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// appEcho is what the test app answers: what reached it.
type appEcho struct {
	Method string
	Path   string
	RawURI string // the request target as it reached the app
	Body   string
	Talos  map[string]string // the X-Talos-* request headers
}

// newTestApp serves the app behind the proxy and returns its address.
func newTestApp(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e := appEcho{Method: r.Method, Path: r.URL.Path, RawURI: r.RequestURI, Body: string(body), Talos: map[string]string{}}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Talos-") {
				e.Talos[k] = strings.Join(v, ",")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Test-App", "1")
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// process is a proxy under test, in its own process group.
type process struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess starts a command and stops it when the test ends: SIGTERM,
// then SIGKILL to its whole process group (nginx's workers included) if it
// has not exited within 10s.
func startProcess(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.out.String())
		}
	})
	return p
}

// errPortTaken says the port picked for a proxy was taken before it bound it.
var errPortTaken = errors.New("port taken")

// waitReady polls url until the test app answers through the proxy, the
// process exits, or 15s pass.
func (p *process) waitReady(client *http.Client, url string) error {
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Test-App") == "1" {
				return nil
			}
		}
		select {
		case <-p.done:
			out := p.out.String()
			if strings.Contains(strings.ToLower(out), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("exited before serving:\n%s", out)
		case <-deadline.C:
			return fmt.Errorf("not serving %s after 15s (last error %v):\n%s", url, err, p.out.String())
		case <-tick.C:
		}
	}
}

// startProxy starts a proxy on a free port and waits until it serves. The
// proxies need a port number in their config, so a port is picked by
// binding :0 and closing; if another process takes it first, the proxy
// fails to bind and is started again on a new port.
func startProxy(t *testing.T, client *http.Client, start func(port int) *process) string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		p := start(port)
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		err := p.waitReady(client, base+"/public/ready")
		if err == nil {
			return base
		}
		if !errors.Is(err, errPortTaken) || attempt == 2 {
			t.Fatal(err)
		}
	}
}

// closedAddr returns an address nothing listens on: a sidecar that is down.
// The port stays bound (by a socket that never listens) until the test
// ends, so connections to it are refused and no other listener can take it
// meanwhile, as one could a port bound and closed again.
func closedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}

// checkSidecarDown asserts that a proxy whose sidecar is unreachable still
// serves public paths and fails closed, with status want, everywhere else.
func checkSidecarDown(t *testing.T, client *http.Client, base string, want int) {
	t.Helper()
	for _, path := range []string{"/orders", "/read/orders"} {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Api-Key", "good")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("X-Test-App") != "" {
			t.Errorf("%s with the sidecar down: %d (from the app: %t), want %d", path, resp.StatusCode, resp.Header.Get("X-Test-App") != "", want)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lookBinary finds a proxy binary on PATH or at its Debian location.
func lookBinary(t *testing.T, name, debianPath, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(debianPath); err == nil {
		return debianPath
	}
	t.Skipf("%s not installed: %s", name, install)
	return ""
}

func newTestClient(t *testing.T) *http.Client {
	tr := &http.Transport{} // no proxy from the environment
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// proxyCase is one request through a proxy and what must come of it.
type proxyCase struct {
	name   string
	method string
	path   string
	header map[string]string
	status int
	// For an allow: the X-Talos-* headers the app must have got, exactly.
	app map[string]string
	// For a denial: the Retry-After the client must get.
	retryAfter string
}

var goodHeaders = map[string]string{
	"X-Talos-Key-Id":          "k1",
	"X-Talos-Actor-Id":        "a1",
	"X-Talos-Scopes":          "read",
	"X-Talos-Tenant":          string(credential.DefaultTenant),
	"X-Talos-Credential-Type": "issued",
}

// proxyCases hold for every proxy config here: /public/ is not checked,
// /read/ needs the "read" scope, everything else any valid key.
var proxyCases = []proxyCase{
	{name: "no credential", path: "/orders", status: 401},
	{name: "unknown key", path: "/orders", header: map[string]string{"X-Api-Key": "bad"}, status: 401},
	{name: "unknown bearer token", path: "/orders", header: map[string]string{"Authorization": "Bearer bad"}, status: 401},
	{name: "key in Authorization", path: "/orders", header: map[string]string{"Authorization": "Bearer good"},
		status: 200, app: goodHeaders},
	{name: "key in X-Api-Key", path: "/orders", header: map[string]string{"X-Api-Key": "good"},
		status: 200, app: goodHeaders},
	{name: "POST with a body", method: "POST", path: "/orders", header: map[string]string{"X-Api-Key": "good"},
		status: 200, app: goodHeaders},
	{name: "scope held", path: "/read/orders", header: map[string]string{"X-Api-Key": "good"},
		status: 200, app: goodHeaders},
	{name: "scope missing", path: "/read/orders", header: map[string]string{"X-Api-Key": "noscope"}, status: 403},
	{name: "no scope needed", path: "/orders", header: map[string]string{"X-Api-Key": "noscope"}, status: 200,
		// No X-Talos-Scopes: the sidecar sent none, and nothing else may.
		app: map[string]string{"X-Talos-Key-Id": "k2", "X-Talos-Actor-Id": "a2",
			"X-Talos-Tenant": string(credential.DefaultTenant), "X-Talos-Credential-Type": "issued"}},
	{name: "public", path: "/public/catalog", status: 200, app: map[string]string{}},
	{name: "public with forged identity", path: "/public/catalog",
		header: map[string]string{"X-Talos-Key-Id": "forged", "X-Talos-Scopes": "admin"}, status: 200, app: map[string]string{}},
	{name: "forged identity", path: "/orders",
		header: map[string]string{"X-Api-Key": "good", "X-Talos-Key-Id": "forged", "X-Talos-Actor-Id": "forged"},
		status: 200, app: goodHeaders},
	{name: "forged tenant", path: "/orders",
		header: map[string]string{"X-Api-Key": "good", "X-Talos-Tenant": "11111111-1111-1111-1111-111111111111"},
		status: 200, app: goodHeaders},
	{name: "forged scope requirement", path: "/orders",
		header: map[string]string{"X-Api-Key": "good", "X-Talos-Scopes": "admin"}, status: 200, app: goodHeaders},
	{name: "rate limited", path: "/orders", header: map[string]string{"X-Api-Key": "limited"}, status: 429, retryAfter: "7"},
	// A second credential header would reach the app unverified.
	{name: "two different credentials", path: "/orders", header: map[string]string{"Authorization": "Bearer good", "X-Api-Key": "bad"}, status: 401},
	{name: "the same credential twice", path: "/orders", header: map[string]string{"Authorization": "Bearer good", "X-Api-Key": "good"},
		status: 200, app: goodHeaders},
	{name: "path condition holds", path: "/read/orders", header: map[string]string{"X-Api-Key": "readonly"}, status: 200,
		app: map[string]string{"X-Talos-Key-Id": "k3", "X-Talos-Actor-Id": "a3", "X-Talos-Scopes": "read",
			"X-Talos-Tenant": string(credential.DefaultTenant), "X-Talos-Credential-Type": "derived_macaroon"}},
	{name: "path condition fails", path: "/orders", header: map[string]string{"X-Api-Key": "readonly"}, status: 403},
	{name: "host condition holds", path: "/orders", header: map[string]string{"X-Api-Key": "localonly"}, status: 200,
		app: map[string]string{"X-Talos-Key-Id": "k4", "X-Talos-Actor-Id": "a4",
			"X-Talos-Tenant": string(credential.DefaultTenant), "X-Talos-Credential-Type": "derived_macaroon"}},
	{name: "sidecar cannot decide", path: "/orders", header: map[string]string{"X-Api-Key": "outage"}, status: 503},
}

func runProxyCases(t *testing.T, client *http.Client, base string) {
	t.Helper()
	t.Run("path attacks", func(t *testing.T) { runPathAttacks(t, base) })
	t.Run("host attacks", func(t *testing.T) { runHostAttacks(t, base) })
	for _, c := range proxyCases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader(`{"item":"book"}`)
			}
			req, err := http.NewRequest(method, base+c.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, got)
			}
			fromApp := resp.Header.Get("X-Test-App") == "1"
			if c.status != http.StatusOK {
				if fromApp {
					t.Fatal("a denied request reached the app")
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("denial Content-Type %q, want application/json", ct)
				}
				if !json.Valid(got) {
					t.Errorf("denial body is not JSON: %s", got)
				}
				if c.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if ra := resp.Header.Get("Retry-After"); ra != c.retryAfter {
					t.Errorf("Retry-After %q, want %q", ra, c.retryAfter)
				}
				return
			}
			if !fromApp {
				t.Fatalf("200 not from the app: %s", got)
			}
			var e appEcho
			if err := json.Unmarshal(got, &e); err != nil {
				t.Fatal(err)
			}
			if e.Method != method || e.Path != c.path {
				t.Errorf("app got %s %s, want %s %s", e.Method, e.Path, method, c.path)
			}
			if method == http.MethodPost && e.Body != `{"item":"book"}` {
				t.Errorf("app got body %q", e.Body)
			}
			if d := cmp.Diff(c.app, e.Talos); d != "" {
				t.Errorf("X-Talos-* headers at the app (-want +got):\n%s", d)
			}
		})
	}
}

// pathAttacks are request targets that leave /read for an app that resolves
// dot segments, decodes escapes or strips ";" parameters, or that cannot be
// read one way only (finding 4 of issue 11).
var pathAttacks = []string{
	"/read/../admin",
	"/read/%2e%2e/admin",
	"/read/%2E%2E/admin",
	"/read/.%2e/admin",
	"/read/..%2fadmin",
	"/read/..%2Fadmin",
	"/read/%2e%2e%2fadmin",
	"/read//../admin",
	"//read/../admin",
	"/read/./../admin",
	"/read/x/../../admin",
	"/read/../read/../admin",
	"/read/..;/admin",
	"/read;x/../admin",
	"/read/..%3B/admin",
	"/read/%252e%252e/admin",
	`/read/..\admin`,
	"/read/..%5cadmin",
	"/read/x%00/../../admin",
	"/read/.../admin",
	"/read/%zz/../../admin",
}

// runPathAttacks sends each of pathAttacks, byte for byte, with a macaroon
// limited to /read: none may reach the app. /read/x passes, to show the key
// works.
func runPathAttacks(t *testing.T, base string) {
	addr := strings.TrimPrefix(base, "http://")
	if st, fromApp, uri := rawGet(t, addr, "/read/x", "", "readonly"); st != http.StatusOK || !fromApp || uri != "/read/x" {
		t.Fatalf("/read/x with the /read macaroon: %d (from the app: %t, as %q), want 200 from the app", st, fromApp, uri)
	}
	for _, p := range pathAttacks {
		st, fromApp, uri := rawGet(t, addr, p, "", "readonly")
		if fromApp || st < 400 {
			t.Errorf("%s with the /read macaroon: %d, reached the app as %q", p, st, uri)
		} else {
			t.Logf("%s: %d", p, st)
		}
	}
}

// runHostAttacks sends requests for another host that claim, one way or
// another, to be for 127.0.0.1, with a macaroon limited to that host: none
// may reach the app.
func runHostAttacks(t *testing.T, base string) {
	addr := strings.TrimPrefix(base, "http://")
	for _, c := range []struct{ name, target, extra string }{
		{"forged X-Forwarded-Host", "/orders", "Host: other.example\r\nX-Forwarded-Host: 127.0.0.1\r\n"},
		{"absolute-form target", "http://other.example/orders", ""},
	} {
		st, fromApp, uri := rawGet(t, addr, c.target, c.extra, "localonly")
		// Caddy answers an empty 200 for a host it has no site for.
		if fromApp {
			t.Errorf("%s with the 127.0.0.1 macaroon: %d, reached the app as %q", c.name, st, uri)
		} else {
			t.Logf("%s: %d", c.name, st)
		}
	}
}

// rawGet sends GET target as written (Go's client would clean or re-encode
// it), with the header lines extra (else Host: 127.0.0.1), and reports the
// status, whether the app answered, and the target the app got.
func rawGet(t *testing.T, addr, target, extra, key string) (status int, fromApp bool, appURI string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if !strings.Contains(extra, "Host: ") {
		extra += "Host: " + addr + "\r\n"
	}
	req := "GET " + target + " HTTP/1.1\r\n" + extra + "X-Api-Key: " + key + "\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Test-App") == "1" {
		var e appEcho
		_ = json.Unmarshal(body, &e)
		return resp.StatusCode, true, e.RawURI
	}
	return resp.StatusCode, false, ""
}
