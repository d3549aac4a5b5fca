package storetest

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

func testGetKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	var keys []credential.Key
	for i := range 5 {
		keys = append(keys, fullKey(tenant, credential.KindIssued, credential.KeyID(fmt.Sprintf("key-%d", i))))
	}
	mustCreate(t, s, keys...)

	got, err := s.GetKeys(ctx, tenant, credential.KindIssued, []credential.KeyID{"key-1", "key-3", "missing", "key-4", "key-1"})
	if err != nil {
		t.Fatalf("GetKeys: %v", err)
	}
	if d := cmp.Diff([]credential.Key{keys[1], keys[3], keys[4]}, sortByID(got), cmpKeys); d != "" {
		t.Errorf("GetKeys mismatch (-want +got):\n%s", d)
	}

	if got, err := s.GetKeys(ctx, tenant, credential.KindIssued, nil); err != nil || len(got) != 0 {
		t.Errorf("GetKeys(nil) = %v, %v; want none", ids(got), err)
	}

	// More IDs than fit one statement's parameters on some databases.
	many := make([]credential.KeyID, 0, 2500)
	for i := range 2500 {
		many = append(many, credential.KeyID(fmt.Sprintf("missing-%d", i)))
	}
	many = append(many, "key-2")
	got, err = s.GetKeys(ctx, tenant, credential.KindIssued, many)
	if err != nil {
		t.Fatalf("GetKeys of 2501 IDs: %v", err)
	}
	if d := cmp.Diff([]credential.KeyID{"key-2"}, ids(got)); d != "" {
		t.Errorf("GetKeys of 2501 IDs mismatch (-want +got):\n%s", d)
	}
}

func testListKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	// IDs that sort differently under case-insensitive or locale collations:
	// the order is by bytes, as Go compares strings.
	var all []credential.Key
	for i, id := range []credential.KeyID{"0-digit", "A-x", "B-upper", "_under", "a-x", "b-lower", "key-10", "key-9", "z"} {
		k := minimalKey(tenant, credential.KindIssued, id)
		k.ActorID = []string{"alice", "bob"}[i%2]
		if i%3 == 0 {
			k.Status = credential.StateRevoked
		}
		all = append(all, k)
	}
	mustCreate(t, s, all...)
	mustCreate(t, s, minimalKey(tenant, credential.KindImported, "other-kind"), minimalKey(newTenant(), credential.KindIssued, "other-tenant"))
	sortByID(all)

	match := func(f store.Filter) []credential.Key {
		var out []credential.Key
		for _, k := range all {
			if (f.ActorID == "" || k.ActorID == f.ActorID) && (f.Status == 0 || k.Status == f.Status) {
				out = append(out, k)
			}
		}
		return out
	}
	for _, f := range []store.Filter{
		{},
		{ActorID: "alice"},
		{Status: credential.StateRevoked},
		{Status: credential.StateActive},
		{ActorID: "bob", Status: credential.StateActive},
		{ActorID: "nobody"},
	} {
		for _, limit := range []int{1, 2, 4, 100} {
			f.Limit = limit
			got := walk(t, s, tenant, f)
			if d := cmp.Diff(match(f), got, cmpKeys); d != "" {
				t.Errorf("pages of %+v mismatch (-want +got):\n%s", f, d)
			}
		}
	}

	got, err := s.ListKeys(ctx, tenant, credential.KindIssued, store.Filter{After: "key-10", Limit: 2})
	if d := cmp.Diff([]credential.KeyID{"key-9", "z"}, ids(got)); err != nil || d != "" {
		t.Errorf("ListKeys after key-10 = %v, %v; mismatch (-want +got):\n%s", ids(got), err, d)
	}
	got, err = s.ListKeys(ctx, tenant, credential.KindIssued, store.Filter{After: "z", Limit: 2})
	if err != nil || len(got) != 0 {
		t.Errorf("ListKeys after the last key = %v, %v; want none", ids(got), err)
	}
	_, err = s.ListKeys(ctx, tenant, credential.KindIssued, store.Filter{Limit: 0})
	wantErr(t, "ListKeys with limit 0", err, credential.ErrInvalidArgument)
}

// walk lists every page of f, checking that each is at most f.Limit long.
func walk(t *testing.T, s store.Store, tenant credential.Tenant, f store.Filter) []credential.Key {
	t.Helper()
	var out []credential.Key
	for {
		page, err := s.ListKeys(t.Context(), tenant, credential.KindIssued, f)
		if err != nil {
			t.Fatalf("ListKeys(%+v): %v", f, err)
		}
		if len(page) > f.Limit {
			t.Fatalf("ListKeys(%+v) = %d keys, more than the limit", f, len(page))
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			return out
		}
		f.After = page[len(page)-1].ID
	}
}

// testPaginationUnderInserts walks pages while keys are inserted, both just
// before the cursor and concurrently at random: no key is returned twice and
// every key that existed before the walk is returned.
func testPaginationUnderInserts(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	var before []credential.Key
	for i := range 60 {
		before = append(before, minimalKey(tenant, credential.KindIssued, credential.KeyID(fmt.Sprintf("m-%03d", i))))
	}
	mustCreate(t, s, before...)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var insertErr error
	wg.Go(func() {
		// Bounded, so that the walk ends even when the inserts outpace it.
		for i := range 40 {
			select {
			case <-stop:
				return
			default:
			}
			prefix := []string{"c-", "x-"}[i%2] // sorts before and after every m- key
			k := minimalKey(tenant, credential.KindIssued, credential.KeyID(prefix+strings.ToLower(rand.Text())))
			err := s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, k) })
			if err != nil {
				insertErr = err
				return
			}
		}
	})

	var seen []credential.KeyID
	f := store.Filter{Limit: 7}
	for {
		page, err := s.ListKeys(ctx, tenant, credential.KindIssued, f)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		seen = append(seen, ids(page)...)
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
		// Just before the cursor (its last byte decremented, then "~b")
		// and just after it: distinct for every cursor.
		c := string(f.After)
		mustCreate(t, s,
			minimalKey(tenant, credential.KindIssued, credential.KeyID(c[:len(c)-1]+string(c[len(c)-1]-1)+"~b")),
			minimalKey(tenant, credential.KindIssued, credential.KeyID(c+"~a")))
	}
	close(stop)
	wg.Wait()
	if insertErr != nil {
		t.Fatalf("concurrent insert: %v", insertErr)
	}

	if !slices.IsSortedFunc(seen, func(a, b credential.KeyID) int { return strings.Compare(string(a), string(b)) }) {
		t.Errorf("pages are not in ID order: %v", seen)
	}
	if c := slices.Compact(slices.Clone(seen)); len(c) != len(seen) {
		t.Errorf("pages returned %d duplicate keys", len(seen)-len(c))
	}
	for _, k := range before {
		if !slices.Contains(seen, k.ID) {
			t.Errorf("pages skipped %s, which existed before the walk", k.ID)
		}
	}
}
