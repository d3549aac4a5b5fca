package apikey_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/pkg/apikey"
	"github.com/talos-project/talos/pkg/credential"
)

// talosImportedID is Talos's HashImportedAPIKey, computed independently.
func talosImportedID(nid, raw string) credential.KeyID {
	sum := sha512.Sum512_256([]byte(nid + "\x00" + raw))
	return credential.KeyID(hex.EncodeToString(sum[:]))
}

func TestImportedID_KnownAnswer(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 4096)
	tests := []struct {
		name   string
		tenant credential.Tenant
		raw    string
		want   credential.KeyID
	}{
		// Computed with Python's hashlib.new("sha512_256"), a third implementation.
		{"default tenant, literal", credential.DefaultTenant, "sk_live_test",
			"83829b0eba39076dceb4276a959d84eff2d3f2fa22a6ba15e1df5d85ea274838"},
		{"default tenant", credential.DefaultTenant, "sk_live_abc123xyz789",
			talosImportedID("00000000-0000-0000-0000-000000000000", "sk_live_abc123xyz789")},
		{"uuid tenant", "00000000-0000-0000-0000-000000000001", "test123",
			talosImportedID("00000000-0000-0000-0000-000000000001", "test123")},
		{"upper-case uuid tenant is canonicalized", "9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A", "ghp_x",
			talosImportedID("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "ghp_x")},
		{"urn uuid tenant is canonicalized", "urn:uuid:9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "ghp_x",
			talosImportedID("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "ghp_x")},
		{"non-uuid tenant is used as is", "acme", "ghp_x", talosImportedID("acme", "ghp_x")},
		{"empty raw", credential.DefaultTenant, "", talosImportedID(string(credential.DefaultTenant), "")},
		{"long raw", "acme", long, talosImportedID("acme", long)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := apikey.ImportedID(tt.tenant, tt.raw); got != tt.want {
				t.Errorf("ImportedID = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestImportedID_TenantIsolation(t *testing.T) {
	t.Parallel()
	const raw = "shared-key-material"
	tenants := []credential.Tenant{
		credential.DefaultTenant,
		"00000000-0000-0000-0000-000000000001",
		"00000000-0000-0000-0000-000000000002",
		"acme", "acme2", "acm", "",
	}
	seen := map[credential.KeyID]credential.Tenant{}
	for _, tn := range tenants {
		id := apikey.ImportedID(tn, raw)
		if prev, dup := seen[id]; dup {
			t.Errorf("tenants %q and %q share imported ID %s", prev, tn, id)
		}
		seen[id] = tn
	}
	// The separator keeps (tenant, raw) splits apart.
	if apikey.ImportedID("ab", "c") == apikey.ImportedID("a", "bc") {
		t.Error(`ImportedID("ab", "c") == ImportedID("a", "bc")`)
	}
}

func TestSecretSet_ImportedIDsKeyed(t *testing.T) {
	t.Parallel()
	exp := now.Add(time.Hour)
	s := mustSecretSet(t, secret('a'),
		apikey.Secret{Value: secret('b'), ExpiresAt: exp},
		apikey.Secret{Value: secret('c'), ExpiresAt: now.Add(-time.Second)},
	)
	const raw = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	keyed := func(sec []byte, nid string) credential.KeyID {
		sub := hmacSHA256(sec, []byte("talos/imported/v1/key"))
		return credential.KeyID(hex.EncodeToString(hmacSHA256(sub, []byte(nid+"\x00"+raw))))
	}
	tests := []struct {
		name   string
		tenant credential.Tenant
		at     time.Time
		want   []credential.KeyID
	}{
		{"current and retired", credential.DefaultTenant, now,
			[]credential.KeyID{keyed(secret('a'), string(credential.DefaultTenant)), keyed(secret('b'), string(credential.DefaultTenant))}},
		{"retired expired", credential.DefaultTenant, exp,
			[]credential.KeyID{keyed(secret('a'), string(credential.DefaultTenant))}},
		{"canonicalized tenant", "9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A", exp,
			[]credential.KeyID{keyed(secret('a'), "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")}},
		{"other tenant", "acme", exp, []credential.KeyID{keyed(secret('a'), "acme")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := s.ImportedIDsKeyed(tt.tenant, raw, tt.at)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ImportedIDsKeyed mismatch (-want +got):\n%s", diff)
			}
			for _, id := range got {
				if id == apikey.ImportedID(tt.tenant, raw) {
					t.Error("keyed ID equals the unkeyed one")
				}
			}
		})
	}
	if a, b := s.ImportedIDsKeyed("t1", raw, now), s.ImportedIDsKeyed("t2", raw, now); a[0] == b[0] {
		t.Error("two tenants share a keyed imported ID")
	}
}

func TestCacheKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("c", 1000)
	independent := func(tenant, cred string) [32]byte {
		var b []byte
		b = append(b, "talos/cache-key/v1\x00"...)
		b = binary.BigEndian.AppendUint64(b, uint64(len(tenant)))
		b = append(b, tenant...)
		b = binary.BigEndian.AppendUint64(b, uint64(len(cred)))
		b = append(b, cred...)
		return sha256.Sum256(b)
	}
	tests := []struct{ tenant, cred string }{
		{string(credential.DefaultTenant), "talos_v2_abc"},
		{"", ""},
		{"acme", long},
	}
	for _, tt := range tests {
		if got, want := apikey.CacheKey(credential.Tenant(tt.tenant), tt.cred), independent(tt.tenant, tt.cred); got != want {
			t.Errorf("CacheKey(%q, %.10q) = %x, want %x", tt.tenant, tt.cred, got, want)
		}
	}
	if apikey.CacheKey("ab", "c") == apikey.CacheKey("a", "bc") {
		t.Error(`CacheKey("ab", "c") == CacheKey("a", "bc")`)
	}
	if apikey.CacheKey("t1", "k") == apikey.CacheKey("t2", "k") {
		t.Error("two tenants share a cache key")
	}
}
