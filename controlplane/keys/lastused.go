package keys

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

// LastUsedOptions tune last-used tracking (config last_used.*).
type LastUsedOptions struct {
	// QueueSize bounds the pending updates; when full, updates are dropped
	// (last_used_time is best effort and never slows a verify down).
	QueueSize int
	// FlushSize and FlushInterval say when pending updates are written.
	FlushSize     int
	FlushInterval time.Duration
}

type usedKey struct {
	tenant credential.Tenant
	kind   credential.Kind
	id     credential.KeyID
}

// lastUsed records successful verifications asynchronously, at most once per
// key per UTC day (as Ory Talos does), in batches written by Service.Run.
type lastUsed struct {
	opts  LastUsedOptions
	queue chan usedKey
	mu    sync.Mutex
	day   time.Time            // the UTC day seen holds
	seen  map[usedKey]struct{} // keys queued today
}

func newLastUsed(o LastUsedOptions) *lastUsed {
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.FlushSize <= 0 {
		o.FlushSize = 100
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 30 * time.Second
	}
	return &lastUsed{opts: o, queue: make(chan usedKey, o.QueueSize), seen: map[usedKey]struct{}{}}
}

// note queues k unless it was already used today. It never blocks.
func (l *lastUsed) note(k *credential.Key, now time.Time) {
	day := now.UTC().Truncate(24 * time.Hour)
	if !k.LastUsedTime.IsZero() && !k.LastUsedTime.UTC().Before(day) {
		return
	}
	u := usedKey{k.Tenant, k.Kind, k.ID}
	l.mu.Lock()
	if !day.Equal(l.day) {
		l.day, l.seen = day, map[usedKey]struct{}{}
	}
	_, dup := l.seen[u]
	if !dup {
		select {
		case l.queue <- u:
			l.seen[u] = struct{}{}
		default: // full: drop, best effort
		}
	}
	l.mu.Unlock()
}

// Run does the service's background work until ctx ends: it writes
// last-used times (flushing what is pending, with a short detached deadline,
// when it stops) and reloads stored signing keys every minute so that a
// rotation made by another replica is published here too. It returns nil
// after a clean stop.
func (s *Service) Run(ctx context.Context) error {
	l := s.used
	tick := time.NewTicker(l.opts.FlushInterval)
	defer tick.Stop()
	keysTick := time.NewTicker(time.Minute)
	defer keysTick.Stop()
	pending := map[usedKey]struct{}{}
	flush := func(ctx context.Context) {
		if len(pending) == 0 {
			return
		}
		groups := map[usedKey][]credential.KeyID{} // by tenant and kind
		for u := range pending {
			g := usedKey{tenant: u.tenant, kind: u.kind}
			groups[g] = append(groups[g], u.id)
		}
		now := s.nowUTC()
		for g, ids := range groups {
			if err := s.store.TouchLastUsed(ctx, g.tenant, g.kind, ids, now); err != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "could not record last-used times", slog.Int("keys", len(ids)), slog.String("error", err.Error()))
			}
		}
		clear(pending)
	}
	for {
		select {
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case u := <-l.queue:
					pending[u] = struct{}{}
				default:
					drained = true
				}
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			flush(fctx)
			cancel()
			return nil
		case u := <-l.queue:
			pending[u] = struct{}{}
			if len(pending) >= l.opts.FlushSize {
				flush(ctx)
			}
		case <-tick.C:
			flush(ctx)
		case <-keysTick.C:
			s.signing.refresh(ctx)
		}
	}
}
