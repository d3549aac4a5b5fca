package sqlite_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/credential"
)

const benchKeys = 100_000

// newBenchStore returns a store holding benchKeys realistic keys and their
// IDs, inserted 10,000 to a transaction.
func newBenchStore(b *testing.B) (store.Store, []credential.KeyID) {
	b.Helper()
	return newBenchStoreAt(b, filepath.Join(b.TempDir(), "bench.db"))
}

// newBenchStoreAt is newBenchStore on the database file path.
func newBenchStoreAt(b *testing.B, path string) (store.Store, []credential.KeyID) {
	b.Helper()
	ctx := b.Context()
	s, err := sqlite.Open(ctx, path, sqlite.Options{AutoMigrate: true})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	b.Cleanup(func() { _ = s.Close() })
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]credential.KeyID, benchKeys)
	for start := 0; start < benchKeys; start += 10_000 {
		err := s.InTx(ctx, func(tx store.Tx) error {
			for i := start; i < min(start+10_000, benchKeys); i++ {
				ids[i] = credential.KeyID(fmt.Sprintf("%08x-5c1e-4f7a-9d2b-%012x", i*2654435761%(1<<32), i))
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
		if err != nil {
			b.Fatalf("insert keys: %v", err)
		}
	}
	return s, ids
}

// BenchmarkGetKey is the verify query against 100k keys.
func BenchmarkGetKey(b *testing.B) {
	s, ids := newBenchStore(b)
	ctx := b.Context()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i += 7919 // a prime stride: spread over the table
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.GetKey(ctx, credential.DefaultTenant, credential.KindIssued, ids[i%len(ids)]); err != nil {
					b.Error(err)
					return
				}
				i += 7919
			}
		})
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
