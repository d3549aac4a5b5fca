package sqlstore

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeStrings(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `[]`, `null`, ` [ ] `, `["a"]`, `["a","b"]`, ` [ "a" , "b" ] `, `["a,b","c"]`, `[""]`,
		`["\u003c"]`, `["tab\t"]`, `["é"]`, "[\"\xff\"]", `["a"`, `["a",]`, `[1]`, `"a"`, `["a"]x`, `{}`,
	} {
		got, err := decodeStrings(in)
		var want []string
		wantErr := in != "" && json.Unmarshal([]byte(in), &want) != nil
		if len(want) == 0 || wantErr {
			want = nil
		}
		if (err != nil) != wantErr || !cmp.Equal(want, got) {
			t.Errorf("decodeStrings(%q) = %q, %v; want %q, error %t", in, got, err, want, wantErr)
		}
	}
}

// FuzzDecodeStrings: the fast path agrees with encoding/json on every input
// it accepts, and encodeStrings round-trips.
func FuzzDecodeStrings(f *testing.F) {
	for _, s := range []string{`["keys:read","keys:write"]`, `[]`, `["a\"b"]`, `["10.0.0.0/8","::1/128"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if got, ok := decodePlainStrings(in); ok {
			var want []string
			if err := json.Unmarshal([]byte(in), &want); err != nil {
				t.Fatalf("fast path accepted %q, which encoding/json rejects: %v", in, err)
			}
			if len(want) == 0 {
				want = nil
			}
			if !cmp.Equal(want, got) {
				t.Fatalf("decodePlainStrings(%q) = %q, encoding/json %q", in, got, want)
			}
		}
		var ss []string
		if json.Unmarshal([]byte(in), &ss) != nil || len(ss) == 0 {
			return
		}
		enc, err := encodeStrings(ss)
		if err != nil {
			t.Fatalf("encodeStrings(%q): %v", ss, err)
		}
		back, err := decodeStrings(enc)
		if err != nil || !cmp.Equal(ss, back) {
			t.Fatalf("round trip of %q via %s = %q, %v", ss, enc, back, err)
		}
	})
}

func TestRebind(t *testing.T) {
	t.Parallel()
	q := `SELECT a FROM t WHERE x = ? AND y IN (?, ?) LIMIT ?`
	if got := (Dialect{}).rebind(q); got != q {
		t.Errorf("Question rebind = %q, want it unchanged", got)
	}
	want := `SELECT a FROM t WHERE x = $1 AND y IN ($2, $3) LIMIT $4`
	if got := (Dialect{Placeholder: Dollar}).rebind(q); got != want {
		t.Errorf("Dollar rebind = %q, want %q", got, want)
	}
}
