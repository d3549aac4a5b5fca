package keys_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/talos-project/talos/controlplane/keys"
	"github.com/talos-project/talos/pkg/credential"
)

// TestService_Import_Strength is finding 7b of issue 11: weak imported keys
// are refused by default, accepted with AllowWeak.
func TestService_Import_Strength(t *testing.T) {
	tests := []struct {
		raw  string
		weak bool
	}{
		{"1234", true},
		{"hunter2", true},
		{"sk_live_short", true},              // 13 characters
		{"0000000000000000", true},           // 16 characters, one repeated
		{"1234567890123456", true},           // 16 digits: ~53 bits at best
		{"abcdefghijklmnopqrstuvwxyz", true}, // a run
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true},
		{"password12345678", true},
		{"4e2f9b1a3c5d7e9f", false}, // 16 random hex digits (64 bits)
		{"sk_live_51HxYzAbCdEfGhIjKlMnOpQr", false},
		{"ghp_16C7e42F292c6912E7710c838347Ae178B4a", false},
		{"8d4c9f3e-2b1a-4f6d-9e8c-7a5b3c2d1e0f", false}, // a UUID
		{"73550819264037158293", false},                 // 20 random digits: ~66 bits
	}
	strict := newTestService(t)
	weak := newTestService(t, withWeakImports())
	for i, tt := range tests {
		in := issueInput("alice")
		in.Name = fmt.Sprint("key ", i)
		_, err := strict.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: in, RawKey: tt.raw})
		switch {
		case tt.weak && err == nil:
			t.Errorf("%q: imported by default, want refused as weak", tt.raw)
		case tt.weak && !strings.Contains(err.Error(), "allow_weak"):
			t.Errorf("%q: error %v, want the weak-key refusal", tt.raw, err)
		case tt.weak && strings.Contains(err.Error(), tt.raw):
			t.Errorf("%q: the refusal echoes the key: %v", tt.raw, err)
		case !tt.weak && err != nil:
			t.Errorf("%q: refused: %v", tt.raw, err)
		}
		if tt.weak {
			checkErr(t, fmt.Sprintf("Import(%q)", tt.raw), err, credential.ErrInvalidArgument)
		}
		weak.mustImport(t, tenantA, tt.raw, in)
		weak.mustVerify(t, tenantA, tt.raw)
	}
}

func TestService_BatchImport_Strength(t *testing.T) {
	ts := newTestService(t)
	out, err := ts.svc.BatchImport(t.Context(), tenantA, []keys.ImportInput{
		{IssueInput: issueInput("alice"), RawKey: "1234"},
		{IssueInput: issueInput("alice"), RawKey: "sk_live_51HxYzAbCdEfGhIjKlMnOpQr"},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, "weak item", out[0].Err, credential.ErrInvalidArgument)
	checkErr(t, "strong item", out[1].Err, nil)
}

func TestService_Import_StrengthConfigurable(t *testing.T) {
	ts := newTestService(t, withOptions(func(o *keys.Options) { o.Imported = keys.ImportPolicy{MinLength: 40, MinEntropyBits: 200} }))
	_, err := ts.svc.Import(t.Context(), tenantA, keys.ImportInput{IssueInput: issueInput("a"), RawKey: "sk_live_51HxYzAbCdEfGhIjKlMnOpQr"})
	checkErr(t, "32 characters under min_length 40", err, credential.ErrInvalidArgument)
	ts.mustImport(t, tenantA, "sk_live_51HxYzAbCdEfGhIjKlMnOpQr_9wT4kLmZ", issueInput("a"))
}
