// Package storetest is the conformance suite of store.Store, which every
// backend runs from a few lines of its own tests, and a fault-injecting
// wrapper for the tests of the store's consumers.
//
// The suite proves the contracts of package store: round trips of every
// field, the ErrNotFound and ErrConflict sentinels, idempotent creates, tenant
// and kind isolation, keyset pagination under concurrent inserts,
// read-check-write transactions where exactly one of many wins, atomic
// rollback of a change and its event, event order, UTC microsecond
// timestamps, large metadata, prompt return on a cancelled context, and
// ErrUnavailable after Close.
//
// Subtests run in parallel, each on a store of its own. This package imports
// only store, credential, the standard library and go-cmp.
package storetest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// Run runs the suite. open must return a new, empty, migrated store each time
// it is called and close it when t ends; the suite may close it first, so
// Close must tolerate a second call.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"key round trip", testKeyRoundTrip},
		{"minimal key round trip", testMinimalKeyRoundTrip},
		{"update clears optional fields", testUpdateClears},
		{"not found", testNotFound},
		{"conflict", testConflict},
		{"idempotent create by request id", testIdempotentCreate},
		{"tenant isolation", testTenantIsolation},
		{"kind isolation", testKindIsolation},
		{"imported key lookup by hash", testImportedKey},
		{"get keys", testGetKeys},
		{"list keys", testListKeys},
		{"pagination under inserts", testPaginationUnderInserts},
		{"concurrent revokes: exactly one wins", testConcurrentRevoke},
		{"concurrent rotations: exactly one wins", testConcurrentRotate},
		{"rollback leaves neither change nor event", testRollback},
		{"events in order with cursor", testEvents},
		{"timestamps UTC microseconds", testTimestamps},
		{"large metadata", testLargeMetadata},
		{"touch last used", testTouchLastUsed},
		{"signing keys", testSigningKeys},
		{"cancelled context", testCancelledContext},
		{"deadline while blocked on a lock", testBlockedDeadline},
		{"closed store is unavailable", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// base is a fixed instant at microsecond precision, in UTC.
var base = time.Date(2031, 3, 4, 5, 6, 7, 891234000, time.UTC)

// cmpKeys compares keys: times by instant, prefixes by value.
var cmpKeys = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// newTenant returns a tenant no other test uses.
func newTenant() credential.Tenant {
	return credential.Tenant("tenant-" + strings.ToLower(rand.Text()))
}

// fullKey returns a key with every field set.
func fullKey(tenant credential.Tenant, kind credential.Kind, id credential.KeyID) credential.Key {
	return credential.Key{
		Tenant:     tenant,
		Kind:       kind,
		ID:         id,
		Name:       "ci deploy key",
		ActorID:    "user:alice",
		Scopes:     []string{"keys:read", "keys:write", "a&b<c>", `quote"d`, "ünïcode"},
		Metadata:   json.RawMessage(`{"team":"platform","n":1,"nested":{"ok":true}}`),
		Status:     credential.StateActive,
		Visibility: credential.VisibilitySecret,
		RatePolicy: &credential.RatePolicy{Quota: 100, Window: time.Minute, Unit: "request"},
		AllowedCIDRs: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.0.2.7/32"),
			netip.MustParsePrefix("2001:db8::/32"),
		},
		RevocationReason:      credential.ReasonUnspecified,
		RevocationDescription: "",
		CreateTime:            base,
		UpdateTime:            base.Add(time.Second),
		ExpireTime:            base.Add(90 * 24 * time.Hour),
		LastUsedTime:          base.Add(time.Hour),
		RequestID:             "req-" + string(id),
		Prefix:                "talos",
		Version:               "v2",
		SecretHash:            []byte{0x00, 0x01, 0xfe, 0xff, 0x80, 0x7f},
	}
}

// minimalKey returns a key with only the required fields set.
func minimalKey(tenant credential.Tenant, kind credential.Kind, id credential.KeyID) credential.Key {
	return credential.Key{
		Tenant:     tenant,
		Kind:       kind,
		ID:         id,
		ActorID:    "user:bob",
		Status:     credential.StateActive,
		Visibility: credential.VisibilitySecret,
		CreateTime: base,
		UpdateTime: base,
	}
}

// mustCreate creates keys in one transaction.
func mustCreate(t *testing.T, s store.Store, keys ...credential.Key) {
	t.Helper()
	err := s.InTx(t.Context(), func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.CreateKey(t.Context(), k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create keys: %v", err)
	}
}

// mustUpdate updates k in its own transaction.
func mustUpdate(t *testing.T, s store.Store, k credential.Key) {
	t.Helper()
	if err := s.InTx(t.Context(), func(tx store.Tx) error { return tx.UpdateKey(t.Context(), k) }); err != nil {
		t.Fatalf("update key %s: %v", k.ID, err)
	}
}

// mustGet reads a key that must exist.
func mustGet(t *testing.T, s store.Store, tenant credential.Tenant, kind credential.Kind, id credential.KeyID) credential.Key {
	t.Helper()
	k, err := s.GetKey(t.Context(), tenant, kind, id)
	if err != nil {
		t.Fatalf("GetKey(%s) = %v", id, err)
	}
	return k
}

// wantErr fails unless err wraps want.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error = %v, want one wrapping %v", what, err, want)
	}
}

// diffKey fails when got differs from want.
func diffKey(t *testing.T, what string, want, got credential.Key, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, append(opts, cmpKeys)...); d != "" {
		t.Errorf("%s: key mismatch (-want +got):\n%s", what, d)
	}
}

// ids returns the IDs of keys, in order.
func ids(keys []credential.Key) []credential.KeyID {
	out := make([]credential.KeyID, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

// sortByID sorts keys by ID, for stores that return them in no order.
func sortByID(keys []credential.Key) []credential.Key {
	slices.SortFunc(keys, func(a, b credential.Key) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return keys
}

// tenantEvents returns the events of tenant, read from the start in pages.
func tenantEvents(t *testing.T, s store.Store, tenant credential.Tenant) []credential.Event {
	t.Helper()
	var out []credential.Event
	var cursor int64
	for {
		evs, err := s.EventsSince(t.Context(), cursor, 100)
		if err != nil {
			t.Fatalf("EventsSince(%d) = %v", cursor, err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			if e.Tenant == tenant {
				out = append(out, e)
			}
		}
		cursor = evs[len(evs)-1].Seq
	}
}
