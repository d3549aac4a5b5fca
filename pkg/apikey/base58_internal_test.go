package apikey

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/mr-tron/base58"
)

// White-box tests of the unexported base58 arithmetic, checked against
// github.com/mr-tron/base58.

func TestB58Decode(t *testing.T) {
	t.Parallel()
	inputs := [][]byte{
		{}, {0}, {0, 0, 0}, {1}, {57}, {58}, {0, 0, 255},
		[]byte("1700000000:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"),
		bytes.Repeat([]byte{0xff}, 64),
		append([]byte{0, 0}, bytes.Repeat([]byte{0xff}, 62)...),
	}
	for _, in := range inputs {
		enc := base58.Encode(in)
		var dst [64]byte
		n, ok := b58Decode(dst[:], enc)
		if !ok || !bytes.Equal(dst[:n], in) {
			t.Errorf("b58Decode(%q) = %x, %v; want %x", enc, dst[:n], ok, in)
		}
	}
	for _, bad := range []string{"0", "O", "I", "l", "abc_", "\xff", base58.Encode(bytes.Repeat([]byte{0xff}, 65))} {
		var dst [64]byte
		if n, ok := b58Decode(dst[:], bad); ok {
			t.Errorf("b58Decode(%q) = %x, want failure", bad, dst[:n])
		}
	}
	var small [4]byte
	if _, ok := b58Decode(small[:], base58.Encode([]byte{1, 2, 3, 4, 5})); ok {
		t.Error("b58Decode overflowed its destination")
	}
}

func TestB58Uint(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 57, 58, math.MaxUint32, math.MaxUint64 - 1, math.MaxUint64} {
		var buf [b58Chunk64]byte
		putB58Uint64(buf[:], v)
		if got, ok := b58Uint(string(buf[:]), math.MaxUint64); !ok || got != v {
			t.Errorf("b58Uint(putB58Uint64(%d)) = %d, %v", v, got, ok)
		}
		if want := strings.TrimLeft(base58.Encode(be64(v)), "1"); strings.TrimLeft(string(buf[:]), "1") != want {
			t.Errorf("putB58Uint64(%d) = %s, mr-tron says %s", v, buf, want)
		}
	}
	if _, ok := b58Uint(strings.Repeat("z", b58Chunk64), math.MaxUint64); ok {
		t.Error("b58Uint accepted a value above 2^64-1")
	}
	var buf [b58Chunk32]byte
	putB58Uint32(buf[:], math.MaxUint32)
	if got, ok := b58Uint(string(buf[:]), math.MaxUint32); !ok || got != math.MaxUint32 {
		t.Errorf("b58Uint(putB58Uint32(max)) = %d, %v", got, ok)
	}
	if _, ok := b58Uint("zzzzzz", math.MaxUint32); ok {
		t.Error("b58Uint accepted a value above 2^32-1")
	}
}

func be64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[7-i] = byte(v >> (8 * i))
	}
	return b
}

func FuzzB58Decode(f *testing.F) {
	f.Add("")
	f.Add("1112")
	f.Add(base58.Encode([]byte("1700000000:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")))
	f.Fuzz(func(t *testing.T, s string) {
		var dst [64]byte
		n, ok := b58Decode(dst[:], s)
		want, err := base58.Decode(s)
		if s == "" {
			want, err = []byte{}, nil // mr-tron rejects "", the empty string of bytes
		}
		switch {
		case err != nil && ok:
			t.Fatalf("b58Decode(%q) = %x, mr-tron: %v", s, dst[:n], err)
		case err == nil && len(want) <= len(dst) && (!ok || !bytes.Equal(dst[:n], want)):
			t.Fatalf("b58Decode(%q) = %x, %v; mr-tron %x", s, dst[:n], ok, want)
		case err == nil && len(want) > len(dst) && ok:
			t.Fatalf("b58Decode(%q) accepted %d bytes", s, len(want))
		}
	})
}
