package serve_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/talos-project/talos/pkg/serve"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestErrorLog: net/http's lines reach the structured log, failed TLS
// handshakes (which any client can cause at will) at debug only.
func TestErrorLog(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	l := serve.ErrorLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Print("http: TLS handshake error from 127.0.0.1:5555: remote error: tls: bad certificate\n")
	l.Print("http: panic serving 127.0.0.1:5556: boom\n")
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"level":"DEBUG"`) || !strings.Contains(lines[0], "TLS handshake error") ||
		!strings.Contains(lines[1], `"level":"WARN"`) || !strings.Contains(lines[1], "panic serving") {
		t.Fatalf("log = %s", out)
	}
	serve.ErrorLog(nil).Print("discarded") // nil logger: no panic
}
