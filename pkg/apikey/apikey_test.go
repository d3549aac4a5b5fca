package apikey_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/mr-tron/base58"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func TestNewV2_RoundTrip(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"a", "talos", "ory_ak", "my_app_", "_", "a_v2_b", "x_v1_y", "ABCDEFGHIJKLMNOP"} {
		t.Run(prefix, func(t *testing.T) {
			t.Parallel()
			iss := mustNewV2(t, prefix)

			u, err := uuid.Parse(string(iss.KeyID))
			if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != string(iss.KeyID) {
				t.Fatalf("KeyID %q is not a canonical UUIDv4 (err %v)", iss.KeyID, err)
			}
			if len(iss.Secret) != 32 {
				t.Fatalf("len(Secret) = %d, want 32", len(iss.Secret))
			}
			if want := len(prefix) + 4 + 72; len(iss.Token) != want {
				t.Errorf("len(Token) = %d, want %d", len(iss.Token), want)
			}

			got, err := apikey.Parse(iss.Token)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := apikey.Parsed{Version: "v2", Prefix: prefix, KeyID: iss.KeyID, Secret: iss.Secret}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
			if !apikey.LooksIssued(iss.Token) {
				t.Error("LooksIssued = false for an issued v2 key")
			}
		})
	}
}

// TestNewV2_KnownAnswer pins the v2 encoding to the vector in
// docs/credential-format.md and to an independent implementation.
func TestNewV2_KnownAnswer(t *testing.T) {
	t.Parallel()
	var raw [48]byte
	for i := range raw {
		raw[i] = byte(i)
	}
	iss, err := apikey.NewV2("talos", bytes.NewReader(raw[:]))
	if err != nil {
		t.Fatal(err)
	}
	const wantToken = "talos_v2_113DUyZY7W6PkiMDgi1EKx3gsHPkECmXt52nKM8ZY8z26NhMJWtsWSA7icPFuECstJ7NShXi"
	// NewV2 sets the version and variant bits: 0x06 -> 0x46, 0x08 -> 0x88.
	raw[6], raw[8] = 0x46, 0x88
	want := apikey.Issued{
		Token:  wantToken,
		KeyID:  "00010203-0405-4607-8809-0a0b0c0d0e0f",
		Secret: raw[16:],
	}
	if diff := cmp.Diff(want, iss); diff != "" {
		t.Errorf("NewV2 mismatch (-want +got):\n%s", diff)
	}
	if got := encodeV2("talos", raw); got != wantToken {
		t.Errorf("independent encoding = %q, want %q", got, wantToken)
	}
}

func TestNewV2_MatchesIndependentEncoding(t *testing.T) {
	t.Parallel()
	for range 200 {
		var raw [48]byte
		rand.Read(raw[:])
		raw[6] = raw[6]&0x0f | 0x40
		raw[8] = raw[8]&0x3f | 0x80
		iss, err := apikey.NewV2("pk_test", bytes.NewReader(raw[:]))
		if err != nil {
			t.Fatal(err)
		}
		if want := encodeV2("pk_test", raw); iss.Token != want {
			t.Fatalf("NewV2 = %q, independent encoding = %q", iss.Token, want)
		}
	}
}

func TestNewV2_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prefix  string
		rnd     func() *bytes.Reader
		wantErr error
	}{
		{name: "empty prefix", prefix: "", wantErr: credential.ErrInvalidArgument},
		{name: "prefix too long", prefix: strings.Repeat("a", 17), wantErr: credential.ErrInvalidArgument},
		{name: "prefix with hyphen", prefix: "sk-live", wantErr: credential.ErrInvalidArgument},
		{name: "prefix with non-ASCII", prefix: "tälos", wantErr: credential.ErrInvalidArgument},
		{name: "short randomness", prefix: "talos", rnd: func() *bytes.Reader { return bytes.NewReader(make([]byte, 47)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rnd := bytes.NewReader(make([]byte, 48))
			if tt.rnd != nil {
				rnd = tt.rnd()
			}
			iss, err := apikey.NewV2(tt.prefix, rnd)
			if err == nil {
				t.Fatalf("NewV2 = %+v, want an error", iss)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}

	t.Run("failing reader", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("entropy source down")
		_, err := apikey.NewV2("talos", iotest.ErrReader(boom))
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want it to wrap %v", err, boom)
		}
	})

	t.Run("nil reader uses crypto/rand", func(t *testing.T) {
		t.Parallel()
		a, err1 := apikey.NewV2("talos", nil)
		b, err2 := apikey.NewV2("talos", nil)
		if err1 != nil || err2 != nil {
			t.Fatalf("errors %v, %v", err1, err2)
		}
		if a.KeyID == b.KeyID || bytes.Equal(a.Secret, b.Secret) {
			t.Error("two keys from crypto/rand collide")
		}
	})
}

// TestNewV1_KnownAnswer rebuilds the Talos v1 format independently with
// mr-tron/base58 and crypto/hmac.
func TestNewV1_KnownAnswer(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, []byte("test-secret-must-be-at-least-32-characters-long-for-hmac"))
	const id = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
	created := time.Unix(1700000000, 999)

	got, err := apikey.NewV1(s, "talos", id, created)
	if err != nil {
		t.Fatal(err)
	}
	msg := "talos_v1_" + base58.Encode([]byte("1700000000:"+id)) + "_"
	mac := hmacSHA256([]byte("test-secret-must-be-at-least-32-characters-long-for-hmac"), []byte(msg))
	if want := msg + base58.Encode(mac); got != want {
		t.Errorf("NewV1 = %q, want %q", got, want)
	}
}

func TestNewV1_RoundTrip(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('c'))
	tests := []struct {
		prefix  string
		created time.Time
	}{
		{"talos", now},
		{"ory_ak", now.Add(123456 * time.Millisecond)},
		{"a", time.Unix(0, 0)},
		{"p_v1_q", time.Unix(1<<40, 0)},
		{"ABCDEFGHIJKLMNOP", time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", 3600))},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			t.Parallel()
			id := mustNewV2(t, "x").KeyID
			tok, err := apikey.NewV1(s, tt.prefix, id, tt.created)
			if err != nil {
				t.Fatal(err)
			}
			got, err := apikey.Parse(tok)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := apikey.Parsed{Version: "v1", Prefix: tt.prefix, KeyID: id, Created: time.Unix(tt.created.Unix(), 0).UTC()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
			if !s.CheckV1(tok, now) {
				t.Error("CheckV1 = false for a key minted under the current secret")
			}
			if !apikey.LooksIssued(tok) {
				t.Error("LooksIssued = false for an issued v1 key")
			}
		})
	}
}

func TestNewV1_Errors(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('c'))
	const id = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
	tests := []struct {
		name    string
		set     *apikey.SecretSet
		prefix  string
		id      credential.KeyID
		created time.Time
	}{
		{"nil set", nil, "talos", id, now},
		{"bad prefix", s, "ta-los", id, now},
		{"upper-case id", s, "talos", credential.KeyID(strings.ToUpper(id)), now},
		{"id without hyphens", s, "talos", "9f8e7d6c5b4a43928170" + "6f5e4d3c2b1a", now},
		{"empty id", s, "talos", "", now},
		{"before 1970", s, "talos", id, time.Unix(-1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := apikey.NewV1(tt.set, tt.prefix, tt.id, tt.created)
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Errorf("NewV1 = %q, %v; want ErrInvalidArgument", tok, err)
			}
		})
	}
}

func TestParse_Malformed(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('c'))
	v2 := mustNewV2(t, "talos").Token
	v1 := mustNewV1(t, s, "talos")
	v1Cut := strings.LastIndexByte(v1, '_')

	var raw [48]byte
	raw[6], raw[8] = 0x46, 0x88
	notV4 := raw
	notV4[6] = 0x16 // version 1
	badVariant := raw
	badVariant[8] = 0xc8 // Microsoft variant

	v1Ident := func(plain string) string {
		return "talos_v1_" + base58.Encode([]byte(plain)) + "_" + strings.Repeat("2", 44)
	}

	tests := []struct {
		name  string
		token string
	}{
		{"empty", ""},
		{"just a prefix", "talos"},
		{"stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"},
		{"github", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"},
		{"v2 body one short", v2[:len(v2)-1]},
		{"v2 body one long", v2 + "2"},
		{"v2 with 0", v2[:20] + "0" + v2[21:]},
		{"v2 with O", v2[:20] + "O" + v2[21:]},
		{"v2 with I", v2[:20] + "I" + v2[21:]},
		{"v2 with l", v2[:20] + "l" + v2[21:]},
		{"v2 with underscore", v2[:20] + "_" + v2[21:]},
		{"v2 prefix too long", strings.Repeat("p", 17) + v2[5:]},
		{"v2 prefix with hyphen", "ta-os" + v2[5:]},
		{"v2 empty prefix", v2[5:]},
		{"v2 other version", strings.Replace(v2, "_v2_", "_v3_", 1)},
		{"v2 chunk overflows uint64", encodeV2Chunks("talos", strings.Repeat("z", 11))},
		{"v2 checksum overflows uint32", v2[:len(v2)-6] + "zzzzzz"},
		{"v2 bad checksum", v2[:len(v2)-6] + "111111"},
		{"v2 UUID not version 4", encodeV2("talos", notV4)},
		{"v2 UUID wrong variant", encodeV2("talos", badVariant)},
		{"v2 with trailing newline", v2 + "\n"},
		{"v2 with leading space", " " + v2},
		{"v1 missing checksum", v1[:v1Cut]},
		{"v1 missing checksum, trailing underscore", v1[:v1Cut+1]},
		{"v1 empty identifier", "talos_v1__" + v1[v1Cut+1:]},
		{"v1 checksum too long", v1 + "22"},
		{"v1 extra underscore", v1 + "_x"},
		{"v1 identifier not base58", "talos_v1_0ujsswThIGTUYm2K8Fj63K_checksum12"},
		{"v1 identifier is not secs:uuid", "talos_v1_" + base58.Encode([]byte("hello")) + "_" + v1[v1Cut+1:]},
		{"v1 negative seconds", v1Ident("-1:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")},
		{"v1 leading zero seconds", v1Ident("01700000000:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")},
		{"v1 seconds overflow", v1Ident("9223372036854775808:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")},
		{"v1 empty seconds", v1Ident(":9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")},
		{"v1 upper-case UUID", v1Ident("1700000000:9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A")},
		{"v1 UUID without hyphens", v1Ident("1700000000:9f8e7d6c5b4a439281706f5e4d3c2b1a")},
		{"v1 UUID in braces", v1Ident("1700000000:{9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a}")},
		{"v1 leading zero byte", "talos_v1_1" + base58.Encode([]byte("1700000000:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")) + "_" + strings.Repeat("2", 44)},
		{"v1 prefix too long", strings.Repeat("p", 17) + v1[5:]},
		{"huge input", strings.Repeat("a", 1<<20) + v2[5:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := apikey.Parse(tt.token)
			if !errors.Is(err, credential.ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want ErrMalformed", p, err)
			}
			if diff := cmp.Diff(apikey.Parsed{}, p); diff != "" {
				t.Errorf("Parse returned fields with an error (-want +got):\n%s", diff)
			}
			if len(tt.token) > 8 && strings.Contains(err.Error(), tt.token[len(tt.token)-8:]) {
				t.Errorf("error %q contains part of the credential", err)
			}
		})
	}
}

// encodeV2Chunks builds a v2-shaped key from literal payload chunks (repeated
// to fill 66 digits) with a valid checksum.
func encodeV2Chunks(prefix, chunk string) string {
	text := prefix + "_v2_" + strings.Repeat(chunk, 66/len(chunk))
	return text + b58Fixed(crc32Big(text), 6)
}

func TestParse_V1AcceptsTalosIdentifiers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		plain   string
		wantID  credential.KeyID
		wantSec int64
	}{
		{"typical", "1700000000:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", 1700000000},
		{"epoch", "0:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", 0},
		{"max int64", strconv.FormatInt(1<<63-1, 10) + ":00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000", 1<<63 - 1},
		{"non-v4 UUID", "1:9f8e7d6c-5b4a-1392-c170-6f5e4d3c2b1a", "9f8e7d6c-5b4a-1392-c170-6f5e4d3c2b1a", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Parse does not check the checksum: any 1 to 44 base58 digits.
			tok := "ory_ak_v1_" + base58.Encode([]byte(tt.plain)) + "_" + "short"
			got, err := apikey.Parse(tok)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := apikey.Parsed{Version: "v1", Prefix: "ory_ak", KeyID: tt.wantID, Created: time.Unix(tt.wantSec, 0).UTC()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParse_SingleCharSubstitution changes every character of sample v2 keys
// to every other printable ASCII character: the checksum (or the shape check)
// must reject every variant, without the HMAC secret.
func TestParse_SingleCharSubstitution(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"talos", "a", "my_app_live_", "ABCDEFGHIJKLMNOP"} {
		t.Run(prefix, func(t *testing.T) {
			t.Parallel()
			for range 8 {
				tok := []byte(mustNewV2(t, prefix).Token)
				for i := range tok {
					orig := tok[i]
					for c := byte(0x20); c < 0x7f; c++ {
						if c == orig {
							continue
						}
						tok[i] = c
						if p, err := apikey.Parse(string(tok)); err == nil {
							t.Fatalf("Parse accepted %q (position %d changed to %q): %+v", tok, i, c, p)
						}
					}
					tok[i] = orig
				}
			}
		})
	}
}

// TestParse_AdjacentTransposition swaps every pair of neighbouring characters
// of sample v2 keys before the checksum: CRC-32 catches every such burst.
func TestParse_AdjacentTransposition(t *testing.T) {
	t.Parallel()
	for range 32 {
		tok := []byte(mustNewV2(t, "talos").Token)
		for i := 0; i+1 < len(tok)-6; i++ {
			if tok[i] == tok[i+1] {
				continue
			}
			tok[i], tok[i+1] = tok[i+1], tok[i]
			if _, err := apikey.Parse(string(tok)); err == nil {
				t.Fatalf("Parse accepted %q (positions %d and %d swapped)", tok, i, i+1)
			}
			tok[i], tok[i+1] = tok[i+1], tok[i]
		}
	}
}

// TestCheckV1_SingleCharSubstitution: v1 has no secret-free checksum, so a
// substitution may still parse; CheckV1 must reject every variant.
func TestCheckV1_SingleCharSubstitution(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('c'))
	for range 2 {
		tok := []byte(mustNewV1(t, s, "talos"))
		for i := range tok {
			orig := tok[i]
			for _, c := range []byte(b58Alphabet + "_0OIl-") {
				if c == orig {
					continue
				}
				tok[i] = c
				if s.CheckV1(string(tok), now) {
					t.Fatalf("CheckV1 accepted %q (position %d changed to %q)", tok, i, c)
				}
			}
			tok[i] = orig
		}
	}
}

func TestLooksIssued(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('c'))
	v2 := mustNewV2(t, "talos").Token
	v1 := mustNewV1(t, s, "talos")
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"v2", v2, true},
		{"v2 with bad checksum", v2[:len(v2)-6] + "111111", true},
		{"v2 with overflowing chunk", encodeV2Chunks("talos", strings.Repeat("z", 11)), true},
		{"v2 with underscored prefix", mustNewV2(t, "sk_live_").Token, true},
		{"v1", v1, true},
		{"v1 with bad checksum", v1[:len(v1)-3] + "abc", true},
		{"v1 minted by another secret", mustNewV1(t, mustSecretSet(t, secret('z')), "other"), true},
		{"v1 with undecodable identifier", "talos_v1_0ujsswThIGTUYm2K8Fj63K_checksum12", false},
		{"v1 with short identifier", "talos_v1_" + base58.Encode([]byte("12:ab")) + "_checksum", false},
		{"v2 body too short", v2[:len(v2)-1], false},
		{"v2 prefix too long", strings.Repeat("p", 17) + v2[5:], false},
		{"empty", "", false},
		{"stripe secret", "sk_live_51H8sQ2ExampleExampleExampleExample00aBcDeF", false},
		{"stripe restricted", "rk_live_51H8sQ2ExampleExample", false},
		{"github pat", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", false},
		{"github fine-grained", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVW", false},
		{"slack", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", false},
		{"aws", "AKIAIOSFODNN7EXAMPLE", false},
		{"uuid", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", false},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", false},
		{"macaroon", "mc_v1_AgETaHR0cHM6Ly9leGFtcGxlLmNvbQIkAAAAAAAAAAAAAAAAAAAAAA", false},
		{"just the separators", "_v1__", false},
		{"v2 separator only", "a_v2_", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := apikey.LooksIssued(tt.s); got != tt.want {
				t.Errorf("LooksIssued(%q) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestValidPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    string
		want bool
	}{
		{"a", true},
		{"talos", true},
		{"ory_ak", true},
		{"_", true},
		{"A1_b2", true},
		{strings.Repeat("z", 16), true},
		{"", false},
		{strings.Repeat("z", 17), false},
		{"a-b", false},
		{"a.b", false},
		{"a b", false},
		{"ä", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if got := apikey.ValidPrefix(tt.p); got != tt.want {
			t.Errorf("ValidPrefix(%q) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, []byte("SECRETSECRETSECRETSECRETSECRET01"), apikey.Secret{Value: []byte("RETIREDRETIREDRETIREDRETIRED0001")})
	iss := mustNewV2(t, "talos")
	p, err := apikey.Parse(iss.Token)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	log.Info("x", "set", s, "issued", iss, "parsed", p, "secret", apikey.Secret{Value: []byte("RETIREDRETIREDRETIREDRETIRED0001")})
	printed := fmt.Sprintf("%v %+v %#v %v %+v %#v %s %v %+v", s, s, s, iss, p, p, apikey.Secret{Value: []byte("RETIREDRETIREDRETIREDRETIRED0001")}, apikey.Secret{Value: []byte("RETIRED")}, []apikey.Secret{{Value: []byte("RETIRED")}})
	for _, out := range []string{logs.String(), printed} {
		for _, leak := range []string{"SECRET", "RETIRED", iss.Token, iss.Token[len(iss.Token)-20:]} {
			if strings.Contains(out, leak) {
				t.Errorf("output leaks %q:\n%s", leak, out)
			}
		}
	}
	if !strings.Contains(logs.String(), string(iss.KeyID)) {
		t.Errorf("log lost the key ID:\n%s", logs.String())
	}
}
