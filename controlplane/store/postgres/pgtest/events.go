package pgtest

import (
	"testing"
	"time"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/pkg/credential"
)

// CheckEventCommitOrder proves that a transaction appending an event waits
// for another that appended one before it and has not committed, so that
// events.seq order is commit order: otherwise the later transaction could
// commit a higher seq first, and a tailer whose cursor passed it would never
// see the earlier event. s must be open with sch.DSN.
func CheckEventCommitOrder(t *testing.T, s store.Store, sch *Schema) {
	t.Helper()
	ctx := t.Context()
	tenant := credential.Tenant("tenant-events-" + sch.Name)
	event := func(id credential.KeyID) credential.Event {
		return credential.Event{Tenant: tenant, Kind: credential.KindIssued, KeyID: id, Type: credential.EventRevoked, Time: time.Unix(0, 0).UTC()}
	}

	firstIn, release := make(chan struct{}), make(chan struct{})
	firstDone, secondDone := make(chan error, 1), make(chan error, 1)
	go func() {
		firstDone <- s.InTx(ctx, func(tx store.Tx) error {
			if err := tx.AppendEvent(ctx, event("first")); err != nil {
				return err
			}
			select {
			case <-firstIn: // a retry: already signalled
			default:
				close(firstIn)
			}
			<-release
			return nil
		})
	}()
	select {
	case <-firstIn:
	case err := <-firstDone:
		t.Fatalf("first transaction: %v", err)
	}
	go func() {
		secondDone <- s.InTx(ctx, func(tx store.Tx) error { return tx.AppendEvent(ctx, event("second")) })
	}()

	// The second transaction must end up waiting on a lock, not commit.
	deadline := time.Now().Add(30 * time.Second)
	for waiting := false; !waiting; {
		select {
		case err := <-secondDone:
			close(release)
			t.Fatalf("the second transaction ended (%v) while the first, which appended an event before it, was open", err)
		default:
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("the second transaction neither waited on a lock nor ended within 30s")
		}
		err := sch.Admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
WHERE application_name = $1 AND wait_event_type = 'Lock')`, sch.Name).Scan(&waiting)
		if err != nil {
			close(release)
			t.Fatalf("read pg_stat_activity: %v", err)
		}
	}
	close(release)
	for name, done := range map[string]chan error{"first": firstDone, "second": secondDone} {
		if err := <-done; err != nil {
			t.Errorf("%s transaction: %v", name, err)
		}
	}

	var got []credential.KeyID
	var cursor int64
	for {
		evs, err := s.EventsSince(ctx, cursor, 100)
		if err != nil {
			t.Fatalf("EventsSince: %v", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if e.Tenant == tenant {
				got = append(got, e.KeyID)
			}
		}
		cursor = evs[len(evs)-1].Seq
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Errorf("events in seq order = %v, want [first second], the commit order", got)
	}
}
