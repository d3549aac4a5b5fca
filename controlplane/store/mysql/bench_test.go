package mysql_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

const benchKeys = 100_000

// newBenchStore returns a store holding benchKeys realistic keys and their
// IDs, inserted 1,000 to a transaction by a few writers at once.
func newBenchStore(b *testing.B) (store.Store, []credential.KeyID) {
	b.Helper()
	if testing.Short() {
		b.Skip("inserting 100,000 keys takes a while; skipped under -short")
	}
	s := newTestDB(b).open(b)
	ctx := b.Context()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]credential.KeyID, benchKeys)
	for i := range ids {
		ids[i] = credential.KeyID(fmt.Sprintf("%08x-5c1e-4f7a-9d2b-%012x", i*2654435761%(1<<32), i))
	}
	const batch = 1000
	var g errgroup.Group
	g.SetLimit(4)
	for start := 0; start < benchKeys; start += batch {
		g.Go(func() error {
			return s.InTx(ctx, func(tx store.Tx) error {
				for i := start; i < min(start+batch, benchKeys); i++ {
					k := credential.Key{
						Tenant: credential.DefaultTenant, Kind: credential.KindIssued, ID: ids[i],
						Name: "service key", ActorID: fmt.Sprintf("user:%d", i%1000),
						Scopes:       []string{"keys:read", "keys:write", "billing:read"},
						Metadata:     json.RawMessage(`{"team":"platform","env":"prod"}`),
						Status:       credential.StateActive,
						Visibility:   credential.VisibilitySecret,
						RatePolicy:   &credential.RatePolicy{Quota: 100, Window: time.Minute, Unit: "request"},
						AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
						CreateTime:   now, UpdateTime: now, ExpireTime: now.AddDate(1, 0, 0),
						Prefix: "talos", Version: "v2", SecretHash: make([]byte, 32),
					}
					if err := tx.CreateKey(ctx, k); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("insert keys: %v", err)
	}
	return s, ids
}

// reportPercentiles reports the p50 and p99 of the latencies in ns.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*50/100]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
}

// BenchmarkGetKey is the verify query against 100k keys, on the statement
// sqlstore prepares, over a real connection; p50 and p99 are per call.
func BenchmarkGetKey(b *testing.B) {
	s, ids := newBenchStore(b)
	ctx := b.Context()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		lat := make([]time.Duration, 0, 1<<16)
		i := 0
		for b.Loop() {
			start := time.Now()
			if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			i += 7919 // a prime stride: spread over the table
		}
		reportPercentiles(b, lat)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var (
			mu  sync.Mutex
			all []time.Duration
		)
		b.RunParallel(func(pb *testing.PB) {
			lat := make([]time.Duration, 0, 1<<14)
			i := 0
			for pb.Next() {
				start := time.Now()
				if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, ids[i%len(ids)]); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(start))
				i += 7919
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		reportPercentiles(b, all)
	})
	b.Run("not found", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, "no-such-key"); err == nil {
				b.Fatal("found a missing key")
			}
		}
	})
}
