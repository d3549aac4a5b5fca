package pipeline

import "testing"

// BenchmarkSharedSealOpen is what an L2 round trip adds on the sidecar's
// side: the keyed Redis key, sealing the entry written and opening the
// entry read.
func BenchmarkSharedSealOpen(b *testing.B) {
	s, err := newSealer([]byte("bench-shared-secret-0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	plain, err := encodeEntry(sampleEntries()[0])
	if err != nil {
		b.Fatal(err)
	}
	l1 := string(make([]byte, 32))
	b.ReportAllocs()
	for b.Loop() {
		k := s.key(l1)
		if _, err := s.open(k, s.seal(k, plain)); err != nil {
			b.Fatal(err)
		}
	}
}
