package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
	"github.com/talos-project/talos/pkg/credential"
)

// promptly bounds how long a call to a database that went away may take:
// far more than a refused connection needs, far less than a hang.
const promptly = 10 * time.Second

// call is one store call, made with ctx.
type call struct {
	name string
	fn   func(ctx context.Context) error
}

func storeCalls(s store.Store, k credential.Key) []call {
	return []call{
		{"GetKey", func(ctx context.Context) error { _, err := s.GetKey(ctx, k.Tenant, k.Kind, k.ID); return err }},
		{"ListKeys", func(ctx context.Context) error {
			_, err := s.ListKeys(ctx, k.Tenant, k.Kind, store.Filter{Limit: 10})
			return err
		}},
		{"InTx", func(ctx context.Context) error {
			return s.InTx(ctx, func(tx store.Tx) error {
				cur, err := tx.GetKey(ctx, k.Tenant, k.Kind, k.ID)
				if err != nil {
					return err
				}
				cur.UpdateTime = cur.UpdateTime.Add(time.Second)
				return tx.UpdateKey(ctx, cur)
			})
		}},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
}

// mustBeUnavailable fails unless err wraps ErrUnavailable and no driver
// type.
func mustBeUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	switch {
	case !errors.Is(err, credential.ErrUnavailable):
		t.Errorf("%s: error = %v, want one wrapping ErrUnavailable", what, err)
	case errors.As(err, &pgErr):
		t.Errorf("%s: error %v unwraps to a driver error", what, err)
	}
}

// timed runs fn with a deadline far past promptly and fails if it returns
// after promptly.
func timed(t *testing.T, what string, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*promptly)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	if d := time.Since(start); d > promptly {
		t.Errorf("%s returned after %v, want well under %v", what, d, promptly)
	}
	return err
}

// TestStore_DatabaseGoesAway: when the server ends the store's sessions and
// refuses new ones, every call returns ErrUnavailable promptly, never a hang
// or a driver error; when it takes connections again, the same store works
// again, without being reopened.
func TestStore_DatabaseGoesAway(t *testing.T) {
	t.Parallel()
	sch := pgtest.NewSchemaWithRole(t)
	s, err := postgres.Open(t.Context(), sch.DSN, postgres.Options{AutoMigrate: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	k := minimalKey("t", "k")
	mustCreate(t, s, k)
	calls := storeCalls(s, k)
	for _, c := range calls { // every call works, and the pool holds connections
		if err := c.fn(t.Context()); err != nil {
			t.Fatalf("%s before the database went away: %v", c.name, err)
		}
	}

	sch.SetLogin(t, false)
	sch.TerminateSessions(t)
	for _, c := range calls {
		for range 2 { // first on a dead connection, then on a refused one
			mustBeUnavailable(t, c.name+" while the database is away", timed(t, c.name, c.fn))
		}
	}

	sch.SetLogin(t, true)
	for _, c := range calls {
		if err := timed(t, c.name, c.fn); err != nil {
			t.Errorf("%s after the database came back: %v", c.name, err)
		}
	}
}

// TestStore_SessionsTerminated: when the server ends the store's sessions
// (pg_terminate_backend, as a restart or a failover does), the next call
// either fails with ErrUnavailable or already runs on a new connection, and
// the call after it succeeds without reopening the store.
func TestStore_SessionsTerminated(t *testing.T) {
	t.Parallel()
	s, sch := newTestStore(t, "")
	k := minimalKey("t", "k")
	mustCreate(t, s, k)
	for _, c := range storeCalls(s, k) {
		if err := c.fn(t.Context()); err != nil {
			t.Fatalf("%s before: %v", c.name, err)
		}
		sch.TerminateSessions(t)
		if err := timed(t, c.name, c.fn); err != nil {
			mustBeUnavailable(t, c.name+" after the sessions ended", err)
		}
		if err := timed(t, c.name, c.fn); err != nil {
			t.Errorf("%s on reconnecting: %v", c.name, err)
		}
	}
}

// TestStore_TerminatedMidTransaction: a transaction whose session ends in
// the middle returns ErrUnavailable promptly, writes nothing, and the store
// works afterwards.
func TestStore_TerminatedMidTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, sch := newTestStore(t, "")
	k := minimalKey("t", "k")
	mustCreate(t, s, k)

	err := timed(t, "InTx", func(ctx context.Context) error {
		return s.InTx(ctx, func(tx store.Tx) error {
			cur, err := tx.GetKey(ctx, k.Tenant, k.Kind, k.ID)
			if err != nil {
				return err
			}
			sch.TerminateSessions(t)
			cur.Status = credential.StateRevoked
			return tx.UpdateKey(ctx, cur)
		})
	})
	mustBeUnavailable(t, "InTx whose session ended", err)
	got, err := s.GetKey(ctx, k.Tenant, k.Kind, k.ID)
	if err != nil || got.Status != credential.StateActive {
		t.Errorf("GetKey after the failed transaction = %v, %v; want the key unchanged", got.Status, err)
	}
}
