package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis's own logging (one line per failed dial, which
// floods stderr while Redis is down) to l at debug level: the cache layer
// already counts and reports its errors. go-redis keeps a process-wide logger,
// so this is for main packages to call once.
func SetLogger(l *slog.Logger) { goredis.SetLogger(slogLogger{l}) }

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	if s.l.Enabled(ctx, slog.LevelDebug) {
		s.l.DebugContext(ctx, "redis client", slog.String("detail", fmt.Sprintf(format, v...)))
	}
}
