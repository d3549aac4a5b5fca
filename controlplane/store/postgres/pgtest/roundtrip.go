package pgtest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// unicode holds strings that a store must keep byte for byte: several
// scripts, right-to-left text, 4-byte characters, emoji sequences joined by
// zero-width joiners, and one letter in composed and decomposed form (NFC
// "é" and NFD "e\u0301", which a normalizing or accent-insensitive
// collation would confuse).
var unicode = []string{
	"鍵の名前", "мой ключ", "مفتاح الخدمة", "κλειδί", "🔑 deploy", "👩🏽‍💻 ci",
	"caf\u00e9", "cafe\u0301", "Straße", "STRASSE", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "tab\there", "a\u200db",
}

// CheckBatchRoundTrip creates 1000 keys in one transaction, with unicode
// IDs, names, owners and scopes, 4 KB of unicode metadata each and secret
// hashes holding every byte value, and checks that GetKeys, GetKey and
// ListKeys return them byte for byte, listed in byte order.
func CheckBatchRoundTrip(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	const n = 1000
	tenant := credential.Tenant("tenant-ünïcode-" + rand.Text())
	now := time.Date(2031, 3, 4, 5, 6, 7, 891234000, time.UTC)

	hash := make([]byte, 256)
	for i := range hash {
		hash[i] = byte(i)
	}
	keys := make([]credential.Key, n)
	for i := range keys {
		u := unicode[i%len(unicode)]
		keys[i] = credential.Key{
			Tenant:     tenant,
			Kind:       credential.KindIssued,
			ID:         credential.KeyID(fmt.Sprintf("%s-%04d", u, i)),
			Name:       fmt.Sprintf("%s #%d", u, i),
			ActorID:    "user:" + unicode[(i+1)%len(unicode)],
			Scopes:     []string{"keys:read", u},
			Metadata:   metadata4K(u, i),
			Status:     credential.StateActive,
			Visibility: credential.VisibilitySecret,
			CreateTime: now, UpdateTime: now,
			RequestID:  fmt.Sprintf("req-%s-%d", u, i),
			SecretHash: hash,
		}
	}
	err := s.InTx(ctx, func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.CreateKey(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create %d keys in one transaction: %v", n, err)
	}

	ids := make([]credential.KeyID, n)
	for i, k := range keys {
		ids[i] = k.ID
	}
	got, err := s.GetKeys(ctx, tenant, credential.KindIssued, ids)
	if err != nil {
		t.Fatalf("GetKeys of %d keys: %v", n, err)
	}
	byID := func(a, b credential.Key) int { return strings.Compare(string(a.ID), string(b.ID)) }
	want := slices.SortedFunc(slices.Values(keys), byID)
	slices.SortFunc(got, byID)
	if d := cmp.Diff(want, got, exact); d != "" {
		t.Fatalf("GetKeys mismatch (-want +got):\n%s", d)
	}
	for _, i := range []int{0, 6, 7, n - 1} {
		k, err := s.GetKey(ctx, tenant, credential.KindIssued, keys[i].ID)
		if d := cmp.Diff(keys[i], k, exact); err != nil || d != "" {
			t.Errorf("GetKey(%q) = %v; mismatch (-want +got):\n%s", keys[i].ID, err, d)
		}
	}

	var listed []credential.Key
	f := store.Filter{Limit: 128}
	for {
		page, err := s.ListKeys(ctx, tenant, credential.KindIssued, f)
		if err != nil {
			t.Fatalf("ListKeys after %q: %v", f.After, err)
		}
		listed = append(listed, page...)
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	if d := cmp.Diff(want, listed, exact); d != "" {
		t.Errorf("ListKeys pages mismatch, want every key in byte order (-want +got):\n%s", d)
	}
}

// exact compares byte slices byte for byte, much faster than cmp does by
// reflection.
// (json.RawMessage is a []byte to cmp.)
var exact = cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })

// metadata4K returns a JSON object of at least 4 KB of unicode text.
func metadata4K(u string, i int) json.RawMessage {
	var b strings.Builder
	fmt.Fprintf(&b, `{"i":%d,"text":"`, i)
	for b.Len() < 4096 {
		b.WriteString(strings.ReplaceAll(u, "\t", `\t`))
		b.WriteString(" · ")
	}
	b.WriteString(`","nested":{"ok":true}}`)
	return json.RawMessage(b.String())
}
