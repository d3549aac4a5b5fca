package serve_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/talos-project/talos/pkg/serve"
)

// drainGroup is a Group of one HTTP server (/ready answers 503 while
// draining; /block waits for release) and a gRPC health server.
type drainGroup struct {
	http, grpc string
	block      chan struct{} // a request to /block has started
	release    chan struct{}
	log        *syncBuffer
	done       chan error
	cancel     context.CancelFunc
	hurry      chan struct{}
	hurryOnce  sync.Once
}

// hurryUp closes hurry (once).
func (d *drainGroup) hurryUp() { d.hurryOnce.Do(func() { close(d.hurry) }) }

// listenPair binds an HTTP and a gRPC listener on loopback.
func listenPair(t *testing.T) (httpLn, grpcLn *serve.Listener) {
	t.Helper()
	httpLn, err := serve.Listen(t.Context(), "127.0.0.1:0", 64)
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err = serve.Listen(t.Context(), "127.0.0.1:0", 64)
	if err != nil {
		t.Fatal(err)
	}
	return httpLn, grpcLn
}

func startDrainGroup(t *testing.T, sh serve.Shutdown) *drainGroup {
	t.Helper()
	httpLn, grpcLn := listenPair(t)
	d := &drainGroup{http: "http://" + httpLn.Addr().String(), grpc: grpcLn.Addr().String(),
		block: make(chan struct{}, 1), release: make(chan struct{}), log: &syncBuffer{}, done: make(chan error, 1), hurry: make(chan struct{})}
	sh.Hurry = d.hurry
	drain := &serve.Drain{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if drain.Draining() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /block", func(w http.ResponseWriter, _ *http.Request) {
		d.block <- struct{}{}
		<-d.release
	})
	hs := serve.HTTPServer(drain.Handler(mux), httpLn, serve.HTTPTimeouts{Write: time.Minute}, nil)
	gs := grpc.NewServer()
	hsrv := health.NewServer()
	healthpb.RegisterHealthServer(gs, hsrv)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() {
		d.done <- serve.Run(ctx, serve.Group{
			HTTP:       []serve.HTTP{{Name: "HTTP", Server: hs, Listener: httpLn}},
			GRPC:       serve.GRPC{Name: "gRPC", Server: gs, Listener: grpcLn},
			Drain:      drain,
			OnShutdown: hsrv.Shutdown,
			Shutdown:   sh,
			Logger:     slog.New(slog.NewJSONHandler(d.log, nil)), ShutdownMessage: "shutting down",
		})
	}()
	t.Cleanup(func() {
		cancel()
		d.hurryUp()
		select {
		case <-d.release:
		default:
			close(d.release)
		}
		<-d.done
	})
	return d
}

func (d *drainGroup) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(d.http + path)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	conn := "" // net/http removes the header and sets Close
	if resp.Close {
		conn = "close"
	}
	return resp.StatusCode, conn, nil
}

// poll calls cond every 10ms until it holds, or fails the test after 10s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRun_Drain: once the context ends, readiness fails at once (HTTP 503,
// gRPC NOT_SERVING) while requests on new connections are still served,
// told to close their connection; a second signal (Hurry) ends the drain
// delay; the servers then stop accepting, and a request in flight still
// gets its answer before Run returns nil.
func TestRun_Drain(t *testing.T) {
	t.Parallel()
	d := startDrainGroup(t, serve.Shutdown{DrainDelay: time.Hour, Timeout: time.Minute})
	if code, conn, err := d.get("/ready"); err != nil || code != 200 || conn == "close" {
		t.Fatalf("/ready before shutdown = %d %q %v", code, conn, err)
	}
	cc, err := grpc.NewClient(d.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	inflight := make(chan int, 1)
	go func() {
		code, _, _ := d.get("/block")
		inflight <- code
	}()
	<-d.block

	d.cancel()
	poll(t, "/ready 503", func() bool { code, _, err := d.get("/ready"); return err == nil && code == 503 })
	resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health while draining = %v, %v; want NOT_SERVING", resp, err)
	}
	// Still serving, on new connections (each get is one), with
	// "Connection: close".
	for range 3 {
		if code, conn, err := d.get("/ready"); err != nil || code != 503 || conn != "close" {
			t.Fatalf("during the drain: %d %q %v, want 503 with Connection: close", code, conn, err)
		}
	}
	select {
	case err := <-d.done:
		t.Fatalf("Run returned during the drain delay: %v", err)
	default:
	}

	d.hurryUp()
	poll(t, "the listener closed", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(d.http, "http://"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-d.done:
		t.Fatalf("Run returned with a request in flight: %v", err)
	default:
	}
	close(d.release)
	if code := <-inflight; code != 200 {
		t.Errorf("the request in flight got %d, want 200", code)
	}
	if err := <-d.done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	d.done <- nil // for the cleanup
	out := d.log.String()
	for _, want := range []string{"readiness failed, draining", "second signal: drain delay cut short", "no longer accepting", "shutdown complete"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", want, strings.Count(out, want), out)
		}
	}
	if strings.Contains(out, `"level":"ERROR"`) {
		t.Errorf("shutdown logged an error:\n%s", out)
	}
}

// TestRun_ShutdownTimeout: a request still running when the timeout passes
// is cut; Run returns nil and says so at warn.
func TestRun_ShutdownTimeout(t *testing.T) {
	t.Parallel()
	d := startDrainGroup(t, serve.Shutdown{Timeout: 100 * time.Millisecond})
	inflight := make(chan error, 1)
	go func() {
		_, _, err := d.get("/block")
		inflight <- err
	}()
	<-d.block
	d.cancel()
	if err := <-d.done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	d.done <- nil // for the cleanup
	if err := <-inflight; err == nil {
		t.Error("the request still running at the timeout was answered")
	}
	if out := d.log.String(); !strings.Contains(out, `"level":"WARN","msg":"shutdown timeout passed`) {
		t.Errorf("no warning of the forced close:\n%s", out)
	}
}

// TestRun_ServingErrorSkipsTheDrain: a server that fails ends Run at once,
// with its error, without waiting out the drain delay.
func TestRun_ServingErrorSkipsTheDrain(t *testing.T) {
	t.Parallel()
	ln, grpcLn := listenPair(t)
	boom := errors.New("boom")
	taskCtx := make(chan context.Context, 1)
	err := serve.Run(t.Context(), serve.Group{
		HTTP: []serve.HTTP{{Name: "HTTP", Server: serve.HTTPServer(http.NotFoundHandler(), ln, serve.HTTPTimeouts{}, nil), Listener: ln}},
		GRPC: serve.GRPC{Name: "gRPC", Server: grpc.NewServer(), Listener: grpcLn},
		Tasks: []func(context.Context) error{
			func(ctx context.Context) error { taskCtx <- ctx; <-ctx.Done(); return nil },
			func(context.Context) error { return boom },
		},
		Shutdown: serve.Shutdown{DrainDelay: time.Hour},
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if ctx := <-taskCtx; ctx.Err() == nil {
		t.Error("a task's context is still live after Run returned")
	}
}
