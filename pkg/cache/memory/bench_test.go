package memory_test

import (
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/cache/memory"
)

func newBenchCache(b *testing.B, n int) (*memory.Cache[*entry], []string) {
	c := newTestCache[*entry](b, memory.Options{MaxBytes: 64 << 20})
	keys := make([]string, n)
	for i := range keys {
		keys[i] = key(i)
		mustSet(b, c, keys[i], &entry{keyID: keys[i], n: i}, 200, time.Hour)
	}
	c.Wait()
	for _, k := range keys {
		if _, ok := c.Get(k); !ok {
			b.Fatal("benchmark entry not resident")
		}
	}
	return c, keys
}

func BenchmarkGetHit(b *testing.B) {
	const n = 1024 // a power of two, for the mask below
	c, keys := newBenchCache(b, n)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Get(keys[i&(n-1)]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkGetHit_Parallel(b *testing.B) {
	const n = 1024
	c, keys := newBenchCache(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Get(keys[i&(n-1)]); !ok {
				b.Error("miss")
				return
			}
			i++
		}
	})
}

func BenchmarkGetMiss(b *testing.B) {
	c, _ := newBenchCache(b, 1)
	k := key(-1)
	b.ReportAllocs()
	for b.Loop() {
		c.Get(k)
	}
}
