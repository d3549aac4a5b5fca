package apikey

import "math/bits"

// b58Alphabet is the Bitcoin base58 alphabet: no 0, O, I or l, so keys survive
// being read aloud or retyped, and no punctuation, so a double click selects a
// whole key.
const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// b58Invalid marks a byte outside the alphabet in b58Digits.
const b58Invalid = 0xff

// b58Digits maps a byte to its base58 digit value, or b58Invalid. Read-only.
var b58Digits = func() (t [256]byte) {
	for i := range t {
		t[i] = b58Invalid
	}
	for i := range len(b58Alphabet) {
		t[b58Alphabet[i]] = byte(i)
	}
	return t
}()

// isB58 reports whether s is non-empty and made only of base58 digits.
func isB58(s string) bool {
	// Digits are below 0x40 and b58Invalid has the top bit set, so one test
	// after the loop replaces a branch per byte.
	var acc byte
	for i := range len(s) {
		acc |= b58Digits[s[i]]
	}
	return s != "" && acc&0x80 == 0
}

// b58SuffixStart returns the index where the longest suffix of s made of
// base58 digits starts (len(s) when s does not end with one).
func b58SuffixStart(s string) int {
	i := len(s)
	for i > 0 && b58Digits[s[i-1]] != b58Invalid {
		i--
	}
	return i
}

// pow58 holds 58^n for n in [0, 10]; 58^10 is the largest power below 2^64.
var pow58 = [11]uint64{
	1, 58, 3364, 195112, 11316496, 656356768, 38068692544, 2207984167552,
	128063081718016, 7427658739644928, 430804206899405824,
}

// b58Words bounds the numbers b58Decode handles: 8 words, 64 bytes.
const b58Words = 8

// b58Decode decodes s with Bitcoin's convention (each leading '1' is a zero
// byte, the rest is a big-endian number without leading zero bytes) into the
// start of dst and returns the decoded length. ok is false when s holds a byte
// outside the alphabet or the result does not fit in dst (at most 64 bytes).
// The decoding is unique: every byte string has exactly one encoding. It does
// not allocate.
func b58Decode(dst []byte, s string) (n int, ok bool) {
	zeros := 0
	for zeros < len(s) && s[zeros] == b58Alphabet[0] {
		zeros++
	}
	if zeros > len(dst) {
		return 0, false
	}
	rest := s[zeros:]

	// words is the number in little-endian 64-bit words; nw of them are used
	// and the top one is never zero.
	var words [b58Words]uint64
	nw := 0
	first := len(rest) % 10
	if first == 0 {
		first = 10
	}
	for off := 0; off < len(rest); {
		digits := 10
		if off == 0 {
			digits = first
		}
		var chunk uint64
		var acc byte
		for _, c := range []byte(rest[off : off+digits]) {
			d := b58Digits[c]
			acc |= d
			chunk = chunk*58 + uint64(d)
		}
		if acc&0x80 != 0 {
			return 0, false
		}
		off += digits

		carry := chunk
		mul := pow58[digits]
		for i := range nw {
			hi, lo := bits.Mul64(words[i], mul)
			var c uint64
			words[i], c = bits.Add64(lo, carry, 0)
			carry = hi + c
		}
		if carry != 0 {
			if nw == len(words) {
				return 0, false
			}
			words[nw] = carry
			nw++
		}
	}

	nb := 0
	if nw > 0 {
		nb = (nw-1)*8 + (bits.Len64(words[nw-1])+7)/8
	}
	n = zeros + nb
	if n > len(dst) {
		return 0, false
	}
	clear(dst[:zeros])
	for i := range nb {
		dst[n-1-i] = byte(words[i/8] >> (8 * (i % 8)))
	}
	return n, true
}

// b58Chunk64 is the number of digits putB58Uint64 writes: 58^11 > 2^64 > 58^10.
const b58Chunk64 = 11

// b58Chunk32 is the number of digits putB58Uint32 writes: 58^6 > 2^32 > 58^5.
const b58Chunk32 = 6

// putB58Uint64 writes v as exactly b58Chunk64 base58 digits, most significant
// first, left-padded with '1'.
func putB58Uint64(dst []byte, v uint64) {
	_ = dst[b58Chunk64-1]
	for i := b58Chunk64 - 1; i >= 0; i-- {
		dst[i] = b58Alphabet[v%58]
		v /= 58
	}
}

// putB58Uint32 writes v as exactly b58Chunk32 base58 digits, most significant
// first, left-padded with '1'.
func putB58Uint32(dst []byte, v uint32) {
	_ = dst[b58Chunk32-1]
	for i := b58Chunk32 - 1; i >= 0; i-- {
		dst[i] = b58Alphabet[v%58]
		v /= 58
	}
}

// b58Uint decodes a fixed-width chunk of at most b58Chunk64 digits written by
// putB58Uint64 or putB58Uint32. ok is false for a byte outside the alphabet or
// a value above max (so every value has exactly one encoding).
func b58Uint(s string, max uint64) (v uint64, ok bool) {
	if s == "" || len(s) > b58Chunk64 {
		return 0, false
	}
	// All digits but the last cannot overflow: 58^10 < 2^64.
	var acc byte
	for i := range len(s) - 1 {
		d := b58Digits[s[i]]
		acc |= d
		v = v*58 + uint64(d)
	}
	d := b58Digits[s[len(s)-1]]
	if (acc|d)&0x80 != 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(v, 58)
	v, c := bits.Add64(lo, uint64(d), 0)
	if hi|c != 0 || v > max {
		return 0, false
	}
	return v, true
}
