package keys_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/sqlite"
	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

const (
	benchKeys    = 100_000 // keys in the shared benchmark database
	benchCreds   = 1_000   // credentials kept to verify, round-robin
	benchTxBatch = 10_000  // keys per seeding transaction
)

// benchDB is the database the 100,000-key benchmarks share. Seeding it once
// per test binary keeps `-bench .` quick; TestMain removes it.
type benchDB struct {
	dir   string
	store store.Store
	svc   *keys.Service
	creds []string // every (benchKeys/benchCreds)-th credential
}

var (
	benchOnce   sync.Once
	sharedBench *benchDB
	benchErr    error
)

func TestMain(m *testing.M) {
	m.Run()
	if sharedBench != nil {
		sharedBench.store.Close()
		os.RemoveAll(sharedBench.dir)
	}
}

// mustBenchDB returns the shared database, seeding it on first use. It skips
// b under -short.
func mustBenchDB(b *testing.B) *benchDB {
	b.Helper()
	if testing.Short() {
		b.Skipf("seeds %d keys; skipped with -short", benchKeys)
	}
	benchOnce.Do(func() {
		start := time.Now()
		sharedBench, benchErr = seedBenchDB(context.Background(), benchKeys)
		if benchErr == nil {
			b.Logf("seeded %d issued keys in %v", benchKeys, time.Since(start).Round(time.Millisecond))
		}
	})
	if benchErr != nil {
		b.Fatalf("seed benchmark database: %v", benchErr)
	}
	return sharedBench
}

// seedBenchDB creates n v2 keys through the store port, in large
// transactions, the way Issue would store them.
func seedBenchDB(ctx context.Context, n int) (_ *benchDB, err error) {
	dir, err := os.MkdirTemp("", "talos-keys-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	st, err := sqlite.Open(ctx, "sqlite://"+filepath.Join(dir, "bench.db"), sqlite.Options{AutoMigrate: true})
	if err != nil {
		return nil, err
	}
	secrets, err := apikey.NewSecretSet(bytes.Repeat([]byte{'b'}, 32))
	if err != nil {
		st.Close()
		return nil, err
	}
	db := &benchDB{dir: dir, store: st, creds: make([]string, 0, benchCreds)}
	every := max(n/benchCreds, 1)
	created := epoch
	batch := make([]credential.Key, 0, benchTxBatch)
	for start := 0; start < n; start += benchTxBatch {
		batch = batch[:0]
		for i := start; i < min(start+benchTxBatch, n); i++ {
			iss, err := apikey.NewV2(testPrefix, nil)
			if err != nil {
				st.Close()
				return nil, err
			}
			batch = append(batch, credential.Key{
				Tenant:     tenantA,
				Kind:       credential.KindIssued,
				ID:         iss.KeyID,
				Name:       "bench",
				ActorID:    fmt.Sprintf("actor-%d", i%1000),
				Scopes:     []string{"orders:read", "orders:write"},
				Metadata:   []byte(`{"plan":"pro"}`),
				Status:     credential.StateActive,
				Visibility: credential.VisibilitySecret,
				CreateTime: created,
				UpdateTime: created,
				Prefix:     testPrefix,
				Version:    apikey.VersionV2,
				SecretHash: secrets.HashSecret(iss.KeyID, iss.Secret),
			})
			if i%every == 0 && len(db.creds) < benchCreds {
				db.creds = append(db.creds, iss.Token)
			}
		}
		err := st.InTx(ctx, func(tx store.Tx) error {
			for i := range batch {
				if err := tx.CreateKey(ctx, batch[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			st.Close()
			return nil, err
		}
	}
	db.svc, err = keys.New(keys.Options{Issuer: testIssuer, Prefix: testPrefix}, keys.Deps{Store: st, Secrets: secrets})
	if err != nil {
		st.Close()
		return nil, err
	}
	return db, nil
}

func (db *benchDB) presented(i int) credential.Presented {
	return credential.Presented{Tenant: tenantA, Credential: db.creds[i%len(db.creds)]}
}

// BenchmarkVerify_Issued verifies issued v2 keys against 100,000 stored ones:
// parse, checksum, one indexed read, HMAC comparison.
func BenchmarkVerify_Issued(b *testing.B) {
	db := mustBenchDB(b)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := db.svc.Verify(ctx, db.presented(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerify_IssuedLatency is BenchmarkVerify_Issued timing each call,
// to report the median and the tail.
func BenchmarkVerify_IssuedLatency(b *testing.B) {
	db := mustBenchDB(b)
	ctx := b.Context()
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := db.presented(i)
		start := time.Now()
		_, err := db.svc.Verify(ctx, p)
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportPercentiles(b, lat)
}

// BenchmarkVerify_IssuedParallel is BenchmarkVerify_Issued from GOMAXPROCS
// goroutines: throughput, not latency.
func BenchmarkVerify_IssuedParallel(b *testing.B) {
	db := mustBenchDB(b)
	ctx := b.Context()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.svc.Verify(ctx, db.presented(int(next.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerify_BadChecksum is the CPU-only rejection path: no read.
// Against BenchmarkVerify_Issued it shows what the database read costs.
func BenchmarkVerify_BadChecksum(b *testing.B) {
	db := mustBenchDB(b)
	ctx := b.Context()
	bad := make([]credential.Presented, len(db.creds))
	for i := range bad {
		c := []byte(db.creds[i])
		c[len(c)-1] = substitute(c[len(c)-1])
		bad[i] = credential.Presented{Tenant: tenantA, Credential: string(c)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := db.svc.Verify(ctx, bad[i%len(bad)]); err == nil {
			b.Fatal("a bad checksum verified")
		}
		i++
	}
}

// BenchmarkBatchVerify_100 verifies 100 issued keys per call, one read.
func BenchmarkBatchVerify_100(b *testing.B) {
	db := mustBenchDB(b)
	ctx := b.Context()
	batches := make([][]credential.Presented, len(db.creds)/keys.MaxBatchVerify)
	for j := range batches {
		batches[j] = make([]credential.Presented, keys.MaxBatchVerify)
		for i := range batches[j] {
			batches[j][i] = db.presented(j*keys.MaxBatchVerify + i)
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		vs, err := db.svc.BatchVerify(ctx, batches[n%len(batches)])
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range vs {
			if v.Err != nil {
				b.Fatal(v.Err)
			}
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*keys.MaxBatchVerify), "ns/credential")
}

// BenchmarkIssue issues keys into a database of its own: validation, minting,
// hashing and one write transaction with its outbox event.
func BenchmarkIssue(b *testing.B) {
	st := newTestStore(b)
	secrets := mustSecretSet(b, 'b')
	svc, err := keys.New(keys.Options{Issuer: testIssuer, Prefix: testPrefix}, keys.Deps{Store: st, Secrets: secrets})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	in := issueInput("bench")
	in.Metadata = []byte(`{"plan":"pro"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := svc.Issue(ctx, tenantA, in); err != nil {
			b.Fatal(err)
		}
	}
}

// reportPercentiles reports the 50th and 99th percentiles of lat.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[min(int(q*float64(len(lat))), len(lat)-1)].Nanoseconds()) }
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}
