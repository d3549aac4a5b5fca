package xds

import (
	"context"
	"fmt"
	"log/slog"
)

// cpLogger adapts slog to go-control-plane's log.Logger. go-control-plane
// logs at info on every watch it opens (one per ACK on every stream), so its
// info goes to debug here. The level is checked before formatting: some of
// its debug messages print a client's whole map of known versions.
type cpLogger struct{ l *slog.Logger }

func (c cpLogger) Debugf(format string, args ...any) { c.logf(slog.LevelDebug, format, args) }
func (c cpLogger) Infof(format string, args ...any)  { c.logf(slog.LevelDebug, format, args) }
func (c cpLogger) Warnf(format string, args ...any)  { c.logf(slog.LevelWarn, format, args) }
func (c cpLogger) Errorf(format string, args ...any) { c.logf(slog.LevelError, format, args) }

func (c cpLogger) logf(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !c.l.Enabled(ctx, level) {
		return
	}
	c.l.Log(ctx, level, "xds: "+fmt.Sprintf(format, args...))
}
