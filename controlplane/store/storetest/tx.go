package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// racers is how many transactions race for one key.
const racers = 8

// errLost is what a racing transaction returns when it finds the key already
// changed: the service's "already revoked" or "already rotated".
var errLost = errors.New("lost the race")

// testConcurrentRevoke races transactions that each read a key, check that it
// is active and revoke it, as the keys service does: exactly one succeeds,
// and every other one sees its commit.
func testConcurrentRevoke(t *testing.T, s store.Store) {
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "contended")
	mustCreate(t, s, k)

	race(t, s, func(tx store.Tx, i int) error {
		ctx := t.Context()
		cur, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
		if err != nil {
			return err
		}
		if cur.Status != credential.StateActive {
			return errLost
		}
		cur.Status = credential.StateRevoked
		cur.RevocationReason = credential.ReasonKeyCompromise
		cur.RevocationDescription = fmt.Sprintf("racer %d", i)
		if err := tx.UpdateKey(ctx, cur); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, credential.Event{Tenant: tenant, Kind: k.Kind, KeyID: k.ID, Type: credential.EventRevoked, Time: base})
	})
	if got := mustGet(t, s, tenant, k.Kind, k.ID); got.Status != credential.StateRevoked {
		t.Errorf("status = %v, want revoked", got.Status)
	}
	if evs := tenantEvents(t, s, tenant); len(evs) != 1 {
		t.Errorf("%d events, want 1: %+v", len(evs), evs)
	}
}

// testConcurrentRotate races rotations: each reads the key, checks it has
// not been superseded, creates its successor and marks the key superseded.
// Exactly one succeeds and exactly one successor exists.
func testConcurrentRotate(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "rotate-me")
	mustCreate(t, s, k)

	race(t, s, func(tx store.Tx, i int) error {
		cur, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
		if err != nil {
			return err
		}
		if cur.SupersededBy != "" {
			return errLost
		}
		next := minimalKey(tenant, k.Kind, credential.KeyID(fmt.Sprintf("successor-%d", i)))
		if err := tx.CreateKey(ctx, next); err != nil {
			return err
		}
		cur.SupersededBy = next.ID
		if err := tx.UpdateKey(ctx, cur); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, credential.Event{Tenant: tenant, Kind: k.Kind, KeyID: k.ID, Type: credential.EventRotated, Time: base})
	})
	list, err := s.ListKeys(ctx, tenant, k.Kind, store.Filter{Limit: 100})
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	got := mustGet(t, s, tenant, k.Kind, k.ID)
	if want := []credential.KeyID{k.ID, got.SupersededBy}; !cmp.Equal(want, ids(list), cmpopts.SortSlices(func(a, b credential.KeyID) bool { return a < b })) {
		t.Errorf("keys after the race = %v, want %v", ids(list), want)
	}
}

// race runs fn in racers concurrent transactions released together, and
// checks that exactly one commits and every other one returns errLost,
// unchanged.
func race(t *testing.T, s store.Store, fn func(tx store.Tx, i int) error) {
	t.Helper()
	start := make(chan struct{})
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = s.InTx(t.Context(), func(tx store.Tx) error { return fn(tx, i) })
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case err != errLost: // identity: InTx returns fn's error itself
			t.Errorf("racer %d: error = %v, want nil or fn's error unchanged (%v)", i, err, errLost)
		}
	}
	if won != 1 {
		t.Errorf("%d transactions committed, want exactly 1", won)
	}
}

// testRollback: a transaction that changes a key, creates another and appends
// an event, then fails, leaves none of it; InTx returns fn's error unchanged.
func testRollback(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	k := fullKey(tenant, credential.KindIssued, "keep")
	mustCreate(t, s, k)
	before := tenantEvents(t, s, tenant)

	errBoom := errors.New("boom")
	err := s.InTx(ctx, func(tx store.Tx) error {
		revoked := k
		revoked.Status = credential.StateRevoked
		if err := tx.UpdateKey(ctx, revoked); err != nil {
			return err
		}
		if err := tx.CreateKey(ctx, minimalKey(tenant, k.Kind, "ghost")); err != nil {
			return err
		}
		if err := tx.AppendEvent(ctx, credential.Event{Tenant: tenant, Kind: k.Kind, KeyID: k.ID, Type: credential.EventRevoked, Time: base}); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom { // identity: InTx returns fn's error itself
		t.Fatalf("InTx = %v, want fn's error unchanged", err)
	}
	diffKey(t, "key after rollback", k, mustGet(t, s, tenant, k.Kind, k.ID))
	_, err = s.GetKey(ctx, tenant, k.Kind, "ghost")
	wantErr(t, "GetKey of a key created in the rolled back transaction", err, credential.ErrNotFound)
	if d := cmp.Diff(before, tenantEvents(t, s, tenant)); d != "" {
		t.Errorf("events after rollback changed (-before +after):\n%s", d)
	}

	// A key created in a rolled back transaction left its ID and request
	// ID free.
	mustCreate(t, s, minimalKey(tenant, k.Kind, "ghost"))
}

// testEvents: events come back in commit order with increasing Seq, the
// cursor excludes what it has seen, and the limit holds.
func testEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	want := []credential.Event{
		{Tenant: tenant, Kind: credential.KindIssued, KeyID: "k1", Type: credential.EventCreated, Time: base},
		{Tenant: tenant, Kind: credential.KindIssued, KeyID: "k1", Type: credential.EventRevoked, Time: base.Add(1 * time.Microsecond)},
		{Tenant: tenant, Kind: credential.KindImported, KeyID: "k2", Type: credential.EventCreated, Time: base.Add(2 * time.Microsecond)},
		{Tenant: tenant, Kind: credential.KindIssued, KeyID: "k3", Type: credential.EventRotated, Time: base.Add(3 * time.Microsecond)},
		{Tenant: tenant, Kind: credential.KindIssued, KeyID: "k3", Type: credential.EventDeleted, Time: base.Add(4 * time.Microsecond)},
	}
	for _, batch := range [][]credential.Event{want[:2], want[2:3], want[3:]} {
		err := s.InTx(ctx, func(tx store.Tx) error {
			for _, e := range batch {
				e.Seq = 999999 // ignored: the store assigns it
				if err := tx.AppendEvent(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("append events: %v", err)
		}
	}

	all, err := s.EventsSince(ctx, 0, 100)
	if err != nil {
		t.Fatalf("EventsSince(0): %v", err)
	}
	if d := cmp.Diff(want, all, cmpopts.IgnoreFields(credential.Event{}, "Seq")); d != "" {
		t.Fatalf("EventsSince(0) mismatch (-want +got):\n%s", d)
	}
	for i, e := range all {
		if e.Seq <= 0 || (i > 0 && e.Seq <= all[i-1].Seq) {
			t.Errorf("event %d has seq %d after %d: want positive and increasing", i, e.Seq, all[max(i-1, 0)].Seq)
		}
		if e.Time.Location() != time.UTC {
			t.Errorf("event %d time %v is not UTC", i, e.Time)
		}
	}

	rest, err := s.EventsSince(ctx, all[1].Seq, 100)
	if d := cmp.Diff(all[2:], rest); err != nil || d != "" {
		t.Errorf("EventsSince(seq of event 1) = %v; mismatch (-want +got):\n%s", err, d)
	}
	page, err := s.EventsSince(ctx, 0, 2)
	if d := cmp.Diff(all[:2], page); err != nil || d != "" {
		t.Errorf("EventsSince(0, limit 2) = %v; mismatch (-want +got):\n%s", err, d)
	}
	none, err := s.EventsSince(ctx, all[len(all)-1].Seq, 100)
	if err != nil || len(none) != 0 {
		t.Errorf("EventsSince(last seq) = %v, %v; want none", none, err)
	}
	_, err = s.EventsSince(ctx, 0, 0)
	wantErr(t, "EventsSince with limit 0", err, credential.ErrInvalidArgument)
}
