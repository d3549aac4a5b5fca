package apikey_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

func TestNewSecretSet_Errors(t *testing.T) {
	t.Parallel()
	short := []byte(strings.Repeat("s", 31))
	tests := []struct {
		name    string
		current []byte
		retired []apikey.Secret
	}{
		{"nil current", nil, nil},
		{"short current", short, nil},
		{"short retired", secret('a'), []apikey.Secret{{Value: secret('b')}, {Value: short}}},
		{"empty retired", secret('a'), []apikey.Secret{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := apikey.NewSecretSet(tt.current, tt.retired...)
			if !errors.Is(err, credential.ErrInvalidArgument) {
				t.Fatalf("NewSecretSet = %v, %v; want ErrInvalidArgument", s, err)
			}
			if strings.Contains(err.Error(), string(short)) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestNewSecretSet_CopiesSecrets(t *testing.T) {
	t.Parallel()
	cur := secret('a')
	s := mustSecretSet(t, cur)
	before := s.Derive("talos/test/v1/x")
	cur[0] = 'z'
	if diff := cmp.Diff(before, s.Derive("talos/test/v1/x")); diff != "" {
		t.Errorf("set changed with the caller's slice (-before +after):\n%s", diff)
	}
}

func TestSecretSet_Derive(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('a'), apikey.Secret{Value: secret('b')})
	for _, label := range []string{"talos/pagination/v1/cursor-key", "talos/macaroon/v1/root-key", ""} {
		want := hmacSHA256(secret('a'), []byte(label))
		if diff := cmp.Diff(want, s.Derive(label)); diff != "" {
			t.Errorf("Derive(%q) mismatch (-want +got):\n%s", label, diff)
		}
	}
	if cmp.Equal(s.Derive("talos/a/v1/k"), s.Derive("talos/b/v1/k")) {
		t.Error("two labels derive the same subkey")
	}
	// The caller owns the result.
	d := s.Derive("talos/a/v1/k")
	d[0] ^= 0xff
	if cmp.Equal(d, s.Derive("talos/a/v1/k")) {
		t.Error("Derive returned shared memory")
	}
}

func TestSecretSet_DeriveAll(t *testing.T) {
	t.Parallel()
	exp := now.Add(time.Hour)
	s := mustSecretSet(t, secret('a'),
		apikey.Secret{Value: secret('b')},                                 // never expires
		apikey.Secret{Value: secret('c'), ExpiresAt: exp},                 // expires in an hour
		apikey.Secret{Value: secret('d'), ExpiresAt: now.Add(-time.Hour)}, // expired
	)
	const label = "talos/pagination/v1/cursor-key"
	keys := func(cs ...byte) [][]byte {
		var out [][]byte
		for _, c := range cs {
			out = append(out, hmacSHA256(secret(c), []byte(label)))
		}
		return out
	}
	tests := []struct {
		name string
		at   time.Time
		want [][]byte
	}{
		{"now", now, keys('a', 'b', 'c')},
		{"just before expiry", exp.Add(-time.Nanosecond), keys('a', 'b', 'c')},
		{"at expiry (exclusive)", exp, keys('a', 'b')},
		{"after expiry", exp.Add(time.Hour), keys('a', 'b')},
		{"long ago", time.Unix(0, 0), keys('a', 'b', 'c', 'd')},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, s.DeriveAll(label, tt.at)); diff != "" {
				t.Errorf("DeriveAll mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSecretSet_HashSecret_KnownAnswer pins the stored-hash encoding: changing
// it would lock out every stored v2 key.
func TestSecretSet_HashSecret_KnownAnswer(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('a'))
	const id = "00010203-0405-4607-8809-0a0b0c0d0e0f"
	sec := []byte(strings.Repeat("S", 32))
	u64 := func(n int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }
	want := hmacSHA256(secret('a'),
		[]byte("talos/apikey/v2/secret-hash\x00"), u64(len(id)), []byte(id), u64(len(sec)), sec)
	if diff := cmp.Diff(want, s.HashSecret(id, sec)); diff != "" {
		t.Errorf("HashSecret mismatch (-want +got):\n%s", diff)
	}
}

func TestSecretSet_HashSecret_Unambiguous(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('a'))
	a := s.HashSecret("ab", []byte("cd"))
	for _, other := range []struct {
		id  credential.KeyID
		sec string
	}{{"a", "bcd"}, {"abc", "d"}, {"", "abcd"}, {"abcd", ""}, {"ab", "cd\x00"}} {
		if cmp.Equal(a, s.HashSecret(other.id, []byte(other.sec))) {
			t.Errorf("HashSecret(ab, cd) == HashSecret(%q, %q)", other.id, other.sec)
		}
	}
	if cmp.Equal(a, s.Derive("ab")) {
		t.Error("HashSecret collides with Derive")
	}
}

func TestSecretSet_MatchSecret(t *testing.T) {
	t.Parallel()
	exp := now.Add(time.Hour)
	old := mustSecretSet(t, secret('o'))
	set := mustSecretSet(t, secret('a'),
		apikey.Secret{Value: secret('o'), ExpiresAt: exp},
		apikey.Secret{Value: secret('x'), ExpiresAt: now}, // already expired
	)
	expired := mustSecretSet(t, secret('x'))
	iss := mustNewV2(t, "talos")
	other := mustNewV2(t, "talos")

	tests := []struct {
		name   string
		id     credential.KeyID
		secret []byte
		stored []byte
		at     time.Time
		want   bool
	}{
		{"current", iss.KeyID, iss.Secret, set.HashSecret(iss.KeyID, iss.Secret), now, true},
		{"wrong secret", iss.KeyID, other.Secret, set.HashSecret(iss.KeyID, iss.Secret), now, false},
		{"other key's hash", iss.KeyID, iss.Secret, set.HashSecret(other.KeyID, iss.Secret), now, false},
		{"retired, before expiry", iss.KeyID, iss.Secret, old.HashSecret(iss.KeyID, iss.Secret), exp.Add(-time.Nanosecond), true},
		{"retired, at expiry", iss.KeyID, iss.Secret, old.HashSecret(iss.KeyID, iss.Secret), exp, false},
		{"hashed under an expired secret", iss.KeyID, iss.Secret, expired.HashSecret(iss.KeyID, iss.Secret), now, false},
		{"hashed under an unknown secret", iss.KeyID, iss.Secret, mustSecretSet(t, secret('u')).HashSecret(iss.KeyID, iss.Secret), now, false},
		{"truncated hash", iss.KeyID, iss.Secret, set.HashSecret(iss.KeyID, iss.Secret)[:31], now, false},
		{"nil hash", iss.KeyID, iss.Secret, nil, now, false},
		{"nil secret", iss.KeyID, nil, set.HashSecret(iss.KeyID, iss.Secret), now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := set.MatchSecret(tt.id, tt.secret, tt.stored, tt.at); got != tt.want {
				t.Errorf("MatchSecret = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("nil set", func(t *testing.T) {
		t.Parallel()
		var s *apikey.SecretSet
		if s.MatchSecret(iss.KeyID, iss.Secret, set.HashSecret(iss.KeyID, iss.Secret), now) {
			t.Error("a nil set matched")
		}
		if s.HashSecret(iss.KeyID, iss.Secret) != nil || s.Derive("x") != nil || s.CheckV1("a_v1_b_c", now) {
			t.Error("a nil set derived or checked something")
		}
	})
}

// TestSecretSet_Rotation walks a secret rotation: keys issued (v2) or minted
// (v1) under the old secret keep working while it is retired, until its
// expiry; new hashes are made under the new secret.
func TestSecretSet_Rotation(t *testing.T) {
	t.Parallel()
	before := mustSecretSet(t, secret('1'))
	iss := mustNewV2(t, "talos")
	stored := before.HashSecret(iss.KeyID, iss.Secret)
	v1 := mustNewV1(t, before, "talos")

	retireAt := now.Add(24 * time.Hour)
	after := mustSecretSet(t, secret('2'), apikey.Secret{Value: secret('1'), ExpiresAt: retireAt})

	if cmp.Equal(stored, after.HashSecret(iss.KeyID, iss.Secret)) {
		t.Fatal("HashSecret did not switch to the new current secret")
	}
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{{now, true}, {retireAt.Add(-time.Second), true}, {retireAt, false}, {retireAt.Add(time.Hour), false}} {
		if got := after.MatchSecret(iss.KeyID, iss.Secret, stored, tt.at); got != tt.want {
			t.Errorf("MatchSecret at %v = %v, want %v", tt.at, got, tt.want)
		}
		if got := after.CheckV1(v1, tt.at); got != tt.want {
			t.Errorf("CheckV1 at %v = %v, want %v", tt.at, got, tt.want)
		}
	}
	// Re-hashed under the new secret, the key outlives the old one.
	if !after.MatchSecret(iss.KeyID, iss.Secret, after.HashSecret(iss.KeyID, iss.Secret), retireAt.Add(time.Hour)) {
		t.Error("re-hashed key does not match after the old secret expired")
	}
	// Dropping the old secret entirely kills its v1 keys at once.
	if mustSecretSet(t, secret('2')).CheckV1(v1, now) {
		t.Error("CheckV1 accepted a v1 key whose secret is gone")
	}
}

func TestSecretSet_CheckV1(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('c'))
	v1 := mustNewV1(t, s, "talos")
	v2 := mustNewV2(t, "talos").Token
	cut := strings.LastIndexByte(v1, '_')
	tests := []struct {
		name  string
		token string
		want  bool
	}{
		{"valid", v1, true},
		{"underscored prefix", mustNewV1(t, s, "a_v1_b"), true},
		{"other secret", mustNewV1(t, mustSecretSet(t, secret('d')), "talos"), false},
		{"other prefix, same rest", "other" + v1[5:], false},
		{"checksum truncated to 64 bits", v1[:cut+12], false},
		{"checksum of zero bytes", v1[:cut+1] + strings.Repeat("1", 32), false},
		{"no checksum", v1[:cut+1], false},
		{"v2 key", v2, false},
		{"empty", "", false},
		{"garbage", "sk_live_abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := s.CheckV1(tt.token, now); got != tt.want {
				t.Errorf("CheckV1(%q) = %v, want %v", tt.token, got, tt.want)
			}
		})
	}
}

func TestSecretSet_Concurrent(t *testing.T) {
	t.Parallel()
	s := mustSecretSet(t, secret('a'), apikey.Secret{Value: secret('b')})
	iss := mustNewV2(t, "talos")
	stored := s.HashSecret(iss.KeyID, iss.Secret)
	v1 := mustNewV1(t, s, "talos")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if !s.MatchSecret(iss.KeyID, iss.Secret, stored, now) || !s.CheckV1(v1, now) {
					t.Error("concurrent verification failed")
					return
				}
				s.Derive("talos/test/v1/x")
				s.ImportedIDsKeyed(credential.DefaultTenant, "raw", now)
			}
		})
	}
	wg.Wait()
}
