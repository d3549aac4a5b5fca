package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// testTimestamps: times go in in any zone at any precision and come out as
// the same instant rounded down to the microsecond, in UTC.
func testTimestamps(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	india := time.FixedZone("IST", 5*3600+30*60)
	k := minimalKey(tenant, credential.KindIssued, "times")
	k.CreateTime = time.Date(2031, 3, 4, 10, 36, 7, 891234567, india)
	k.UpdateTime = time.Date(1969, 12, 31, 23, 59, 59, 999999500, time.UTC) // before the epoch
	k.ExpireTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, india)
	k.LastUsedTime = time.Date(2031, 3, 4, 5, 6, 7, 1, time.UTC)
	mustCreate(t, s, k)

	got := mustGet(t, s, tenant, k.Kind, k.ID)
	for _, c := range []struct {
		name    string
		in, got time.Time
	}{
		{"CreateTime", k.CreateTime, got.CreateTime},
		{"UpdateTime", k.UpdateTime, got.UpdateTime},
		{"ExpireTime", k.ExpireTime, got.ExpireTime},
		{"LastUsedTime", k.LastUsedTime, got.LastUsedTime},
	} {
		checkTime(t, c.name, c.in, c.got)
	}

	touched := time.Date(2032, 1, 1, 0, 0, 0, 123456789, india)
	if err := s.TouchLastUsed(ctx, tenant, k.Kind, []credential.KeyID{k.ID}, touched); err != nil {
		t.Fatalf("TouchLastUsed: %v", err)
	}
	checkTime(t, "LastUsedTime after TouchLastUsed", touched, mustGet(t, s, tenant, k.Kind, k.ID).LastUsedTime)

	at := time.Date(2031, 3, 4, 10, 36, 7, 999, india)
	err := s.InTx(ctx, func(tx store.Tx) error {
		return tx.AppendEvent(ctx, credential.Event{Tenant: tenant, Kind: k.Kind, KeyID: k.ID, Type: credential.EventUpdated, Time: at})
	})
	if err != nil {
		t.Fatalf("AppendEvent: %v", err)
	}
	evs := tenantEvents(t, s, tenant)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	checkTime(t, "Event.Time", at, evs[0].Time)
}

func checkTime(t *testing.T, name string, in, got time.Time) {
	t.Helper()
	if want := in.Truncate(time.Microsecond); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("%s = %v (%v), want %v in UTC", name, got, got.Location(), want.UTC())
	}
}

// calls returns one call of every Store method, all made with ctx.
func calls(ctx context.Context, s store.Store) []struct {
	name string
	call func() error
} {
	tenant := newTenant()
	const kind = credential.KindIssued
	return []struct {
		name string
		call func() error
	}{
		{"GetKey", func() error { _, err := s.GetKey(ctx, tenant, kind, "k"); return err }},
		{"GetKeys", func() error { _, err := s.GetKeys(ctx, tenant, kind, []credential.KeyID{"k"}); return err }},
		{"FindByRequestID", func() error { _, err := s.FindByRequestID(ctx, tenant, kind, "r"); return err }},
		{"ListKeys", func() error { _, err := s.ListKeys(ctx, tenant, kind, store.Filter{Limit: 1}); return err }},
		{"TouchLastUsed", func() error { return s.TouchLastUsed(ctx, tenant, kind, []credential.KeyID{"k"}, base) }},
		{"InTx", func() error {
			return s.InTx(ctx, func(tx store.Tx) error { return tx.CreateKey(ctx, minimalKey(tenant, kind, "k")) })
		}},
		{"EventsSince", func() error { _, err := s.EventsSince(ctx, 0, 1); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
}

// testCancelledContext: a call with a cancelled context fails with the
// context's error wrapped in credential.ErrUnavailable.
func testCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range calls(ctx, s) {
		err := c.call()
		if !errors.Is(err, context.Canceled) || !errors.Is(err, credential.ErrUnavailable) {
			t.Errorf("%s with a cancelled context: error = %v, want context.Canceled wrapped in ErrUnavailable", c.name, err)
		}
	}
}

// testBlockedDeadline: a transaction waiting for a lock another transaction
// holds gives up when its deadline passes, with ErrDeadlineExceeded, rather
// than waiting for the lock.
func testBlockedDeadline(t *testing.T, s store.Store) {
	ctx := t.Context()
	tenant := newTenant()
	k := minimalKey(tenant, credential.KindIssued, "locked")
	mustCreate(t, s, k)

	locked, release := make(chan struct{}), make(chan struct{})
	holderDone := make(chan error, 1)
	var gaveUp bool // written by the holder before holderDone
	go func() {
		holderDone <- s.InTx(ctx, func(tx store.Tx) error {
			cur, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
			if err != nil {
				return err
			}
			cur.Name = "held"
			if err := tx.UpdateKey(ctx, cur); err != nil {
				return err
			}
			close(locked)
			// A watchdog, not a wait: the contender must return long before.
			select {
			case <-release:
			case <-time.After(30 * time.Second):
				gaveUp = true
			}
			return nil
		})
	}()
	select {
	case <-locked:
	case err := <-holderDone:
		t.Fatalf("holder transaction: %v", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := s.InTx(cctx, func(tx store.Tx) error {
		_, err := tx.GetKey(cctx, tenant, k.Kind, k.ID)
		return err
	})
	close(release)
	if herr := <-holderDone; herr != nil {
		t.Errorf("holder transaction: %v", herr)
	}
	if gaveUp {
		t.Fatalf("the blocked transaction returned only after the lock was released")
	}
	if !errors.Is(err, credential.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("blocked InTx: error = %v, want context.DeadlineExceeded wrapped in ErrDeadlineExceeded", err)
	}
}

// testClosed: after Close every call fails with ErrUnavailable, and a second
// Close is a no-op.
func testClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range calls(t.Context(), s) {
		if err := c.call(); !errors.Is(err, credential.ErrUnavailable) {
			t.Errorf("%s after Close: error = %v, want one wrapping ErrUnavailable", c.name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
