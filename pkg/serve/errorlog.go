package serve

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// ErrorLog is an http.Server ErrorLog that writes to l: failed TLS
// handshakes (a client without a certificate, of another CA, speaking
// plaintext; any client can cause them, as often as it likes) at debug,
// every other line (a handler panic, an accept error) at warn. Nil l
// discards.
func ErrorLog(l *slog.Logger) *log.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, "http server", slog.String("error", msg))
	return len(p), nil
}
