package apikey_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

// TestVectors pins the test vectors published in docs/credential-format.md.
// They were computed with Python's hashlib, hmac and zlib, an implementation
// independent of this package.
func TestVectors(t *testing.T) {
	t.Parallel()
	var raw [48]byte
	for i := range raw {
		raw[i] = byte(i)
	}
	iss, err := apikey.NewV2("talos", bytes.NewReader(raw[:]))
	if err != nil {
		t.Fatal(err)
	}
	s := mustSecretSet(t, secret('a'))

	tests := []struct {
		name string
		got  string
		want string
	}{
		{"v2 token", iss.Token, "talos_v2_113DUyZY7W6PkiMDgi1EKx3gsHPkECmXt52nKM8ZY8z26NhMJWtsWSA7icPFuECstJ7NShXi"},
		{"v2 key ID", string(iss.KeyID), "00010203-0405-4607-8809-0a0b0c0d0e0f"},
		{"v2 secret hash", hex.EncodeToString(s.HashSecret(iss.KeyID, iss.Secret)), "c81cc0566f2f4a20d5c089fe85d19b50c0983c2d232c51fdaf088db560fadb2c"},
		{"imported ID", string(apikey.ImportedID(credential.DefaultTenant, "sk_live_test")), "83829b0eba39076dceb4276a959d84eff2d3f2fa22a6ba15e1df5d85ea274838"},
		{"keyed imported ID", string(s.ImportedIDsKeyed(credential.DefaultTenant, "sk_live_test", now)[0]), "9d7b3676dfdcf939043c265d95ad5adcfac9a5687d9f20e48be2efb17a6e7795"},
		{"cache key", hexArray(apikey.CacheKey(credential.DefaultTenant, iss.Token)), "5883087e145c9ae6d14a450110ef52ca9b19905aab1fa453fe633b7b44ca3ee3"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func hexArray(b [32]byte) string { return hex.EncodeToString(b[:]) }
