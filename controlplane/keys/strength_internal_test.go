package keys

import (
	"math"
	"testing"
)

func TestEstimateBits(t *testing.T) {
	tests := []struct {
		s    string
		want float64 // counted characters × log2(class sizes)
	}{
		{"", 0},
		{"1234", 2 * math.Log2(10)},
		{"4321", 2 * math.Log2(10)},
		{"1111", 2 * math.Log2(10)},
		{"1357", 4 * math.Log2(10)},
		{"1212", 4 * math.Log2(10)},
		{"abcXYZ", 4 * math.Log2(52)},
		{"aZ9_", 4 * math.Log2(95)},
		{"aé", 2 * math.Log2(26+128)},
		{"4e2f9b1a3c5d7e9f", 16 * math.Log2(36)},
	}
	for _, tt := range tests {
		if got := estimateBits(tt.s); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("estimateBits(%q) = %.2f, want %.2f", tt.s, got, tt.want)
		}
	}
}

func TestHasEscapedNUL(t *testing.T) {
	tests := []struct {
		js   string
		want bool
	}{
		{`{"a":"b"}`, false},
		{`{"a":"\u0000"}`, true},
		{`{"\u0000":1}`, true},
		{`{"a":"x\u0000y"}`, true},
		{`{"a":"\\u0000"}`, false}, // an escaped backslash, then text
		{`{"a":"\\\u0000"}`, true},
		{`{"a":"\u00001"}`, true},
		{`{"a":"\u0001"}`, false},
		{`{"a":"\"\u0000"}`, true},
	}
	for _, tt := range tests {
		if got := hasEscapedNUL([]byte(tt.js)); got != tt.want {
			t.Errorf("hasEscapedNUL(%s) = %v, want %v", tt.js, got, tt.want)
		}
	}
}
