package apikey_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/talos-project/talos/pkg/apikey"
)

// FuzzParse checks that Parse never panics, that everything it accepts is
// LooksIssued, and that the fields it returns re-encode to the same key: v2
// exactly, v1 up to the checksum (which Parse does not check).
func FuzzParse(f *testing.F) {
	s := mustSecretSet(f, secret('f'))
	for _, p := range []string{"talos", "a", "my_app_", "x_v2_y", "ABCDEFGHIJKLMNOP"} {
		f.Add(mustNewV2(f, p).Token)
		f.Add(mustNewV1(f, s, p))
	}
	for _, seed := range []string{
		"", "_v1_", "_v2_", "a_v1__", "a_v2_", "sk_live_abc", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
		"talos_v1_0ujsswThIGTUYm2K8Fj63K_checksum12", "talos_v2_" + strings.Repeat("z", 72),
		"talos_v2_" + strings.Repeat("1", 72), "eyJ.a.b",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := apikey.Parse(token)
		looks := apikey.LooksIssued(token)
		if err != nil {
			if p.Version != "" || p.KeyID != "" || p.Secret != nil {
				t.Fatalf("Parse returned fields with error %v: %+v", err, p)
			}
			if looks && !strings.Contains(token, "_v2_") {
				t.Fatalf("LooksIssued(%q) = true but Parse fails: %v", token, err)
			}
			return
		}
		if !looks {
			t.Fatalf("Parse accepted %q but LooksIssued = false", token)
		}
		if !apikey.ValidPrefix(p.Prefix) {
			t.Fatalf("Parse returned invalid prefix %q", p.Prefix)
		}
		u, err := uuid.Parse(string(p.KeyID))
		if err != nil || u.String() != string(p.KeyID) {
			t.Fatalf("KeyID %q is not a canonical UUID", p.KeyID)
		}
		switch p.Version {
		case "v2":
			raw := append(u[:], p.Secret...)
			iss, err := apikey.NewV2(p.Prefix, bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if iss.Token != token {
				t.Fatalf("re-encoded %q as %q", token, iss.Token)
			}
			if diff := cmp.Diff(apikey.Issued{Token: token, KeyID: p.KeyID, Secret: p.Secret}, iss); diff != "" {
				t.Fatalf("re-encoding mismatch (-parsed +issued):\n%s", diff)
			}
		case "v1":
			if p.Secret != nil {
				t.Fatalf("v1 parse returned a secret")
			}
			again, err := apikey.NewV1(s, p.Prefix, p.KeyID, p.Created)
			if err != nil {
				t.Fatalf("NewV1 from parsed fields: %v", err)
			}
			cut := strings.LastIndexByte(token, '_')
			if again[:strings.LastIndexByte(again, '_')] != token[:cut] {
				t.Fatalf("re-encoded %q as %q", token, again)
			}
			if s.CheckV1(token, now) != (token == again) {
				t.Fatalf("CheckV1(%q) disagrees with re-minting", token)
			}
		default:
			t.Fatalf("unknown version %q", p.Version)
		}
	})
}
