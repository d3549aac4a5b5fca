package upstream_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/talos-project/talos/sidecar/upstream"
)

// TestClient_ReconnectBackoffCapped: while the control plane refuses
// connections, the client keeps trying about every second at most, so that
// it is back within about a second of the control plane's return however
// long the outage was. gRPC's default backoff (1s, ×1.6, up to 120s) would
// make the 9th attempt wait about 15s past the start and the gap before it
// above 6s. No call is made: the channel reconnects by itself.
func TestClient_ReconnectBackoffCapped(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	refuse := func(ctx context.Context, _ string) (net.Conn, error) {
		mu.Lock()
		attempts = append(attempts, time.Now())
		mu.Unlock()
		return nil, errors.New("connection refused (test)")
	}
	newTestClient(t, "127.0.0.1:1", upstream.Options{DialOptions: []grpc.DialOption{grpc.WithContextDialer(refuse)}})
	const want = 9
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(attempts)
		mu.Unlock()
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connection attempts within 15s, want %d: the reconnect backoff is not capped near 1s", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var widest time.Duration
	for i := 1; i < want; i++ {
		widest = max(widest, attempts[i].Sub(attempts[i-1]))
	}
	// 1s cap plus 20% jitter, plus slack for a loaded machine.
	if widest > 1700*time.Millisecond {
		t.Errorf("widest gap between connection attempts = %v, want about 1s at most", widest)
	}
	t.Logf("%d attempts in %v, widest gap %v", want, attempts[want-1].Sub(attempts[0]), widest)
}
