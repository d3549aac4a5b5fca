package mysql_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/talos-project/talos/controlplane/store"
	"github.com/talos-project/talos/controlplane/store/migrate"
	"github.com/talos-project/talos/controlplane/store/mysql"
	"github.com/talos-project/talos/controlplane/store/storetest"
	"github.com/talos-project/talos/pkg/credential"
)

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return newTestDB(t).open(t) })
}

var base = time.Date(2031, 3, 4, 5, 6, 7, 891234000, time.UTC)

func testKey(tenant credential.Tenant, id credential.KeyID) credential.Key {
	return credential.Key{
		Tenant: tenant, Kind: credential.KindIssued, ID: id, ActorID: "user:bob",
		Status: credential.StateActive, Visibility: credential.VisibilitySecret,
		CreateTime: base, UpdateTime: base,
	}
}

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
		t.Fatalf("create %d keys: %v", len(keys), err)
	}
}

func TestOpen_NotMigrated(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	_, err := mysql.Open(t.Context(), db.DSN, mysql.Options{})
	if !errors.Is(err, migrate.ErrNotMigrated) {
		t.Fatalf("Open of a fresh database: error = %v, want one wrapping migrate.ErrNotMigrated", err)
	}
	if !strings.Contains(err.Error(), "talos migrate up") {
		t.Errorf("error %q does not say how to migrate", err)
	}
}

func TestOpen_Unreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: refused at once. The password must not show.
	_, err := mysql.Open(t.Context(), "mysql://talos:s3cret@127.0.0.1:1/talos?timeout=1s", mysql.Options{})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q contains the password", err)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)

	sts, err := mysql.MigrationStatus(ctx, db.DSN)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if d := cmp.Diff([]migrate.State{{Version: 1, Name: "init"}, {Version: 2, Name: "signing_keys"}}, sts); d != "" {
		t.Errorf("status before Migrate mismatch (-want +got):\n%s", d)
	}

	// Replicas that start together: every one succeeds, each migration is
	// applied once.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = mysql.Migrate(ctx, db.DSN) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate %d: %v", i, err)
		}
	}
	if err := mysql.Migrate(ctx, db.DSN); err != nil { // nothing left to do
		t.Fatalf("Migrate again: %v", err)
	}
	sts, err = mysql.MigrationStatus(ctx, db.DSN)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	want := []migrate.State{{Version: 1, Name: "init", Applied: true}, {Version: 2, Name: "signing_keys", Applied: true}}
	if d := cmp.Diff(want, sts, cmpopts.IgnoreFields(migrate.State{}, "AppliedAt")); d != "" {
		t.Errorf("status after Migrate mismatch (-want +got):\n%s", d)
	}
	if len(sts) > 0 && (sts[0].AppliedAt.IsZero() || sts[0].AppliedAt.Location() != time.UTC) {
		t.Errorf("AppliedAt = %v, want a UTC time", sts[0].AppliedAt)
	}
	var rows int
	if err := db.conn(t).QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil || rows != 2 {
		t.Errorf("schema_migrations holds %d rows (%v), want 2", rows, err)
	}

	s, err := mysql.Open(ctx, db.DSN, mysql.Options{})
	if err != nil {
		t.Fatalf("Open after Migrate: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestMigrate_Resumes: DDL commits implicitly, so a migration can stop
// after some of its statements without its schema_migrations row; running
// it again completes it.
func TestMigrate_Resumes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	script, err := os.ReadFile("migrations/0001_init.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(script), ";\n")
	if !strings.Contains(first, "CREATE TABLE IF NOT EXISTS api_keys") {
		t.Fatalf("the first statement of 0001 is not api_keys':\n%s", first)
	}
	if _, err := db.conn(t).ExecContext(ctx, first); err != nil {
		t.Fatalf("run the first statement of 0001: %v", err)
	}
	if err := mysql.Migrate(ctx, db.DSN); err != nil {
		t.Fatalf("Migrate after a partial migration: %v", err)
	}
	s := db.open(t)
	k := testKey(credential.DefaultTenant, "k")
	err = s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.CreateKey(ctx, k); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, credential.Event{Tenant: k.Tenant, Kind: k.Kind, KeyID: k.ID, Type: credential.EventCreated, Time: base})
	})
	if err != nil {
		t.Fatalf("create a key and its event: %v", err)
	}
}

// TestMigrate_Lock: Migrate waits for the migration lock of its database,
// which another process holds, until its context ends.
func TestMigrate_Lock(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	holder, err := db.Admin.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	var got int
	if err := holder.QueryRowContext(t.Context(), "SELECT GET_LOCK(?, 0)", mysql.LockName(db.Name)).Scan(&got); err != nil || got != 1 {
		t.Fatalf("GET_LOCK = %d, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := mysql.Migrate(ctx, db.DSN); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Migrate while another holds the lock: error = %v, want context.DeadlineExceeded", err)
	}
	if _, err := holder.ExecContext(t.Context(), "DO RELEASE_LOCK(?)", mysql.LockName(db.Name)); err != nil {
		t.Fatal(err)
	}
	if err := mysql.Migrate(t.Context(), db.DSN); err != nil {
		t.Errorf("Migrate after the lock was released: %v", err)
	}
}

// TestInTx_RetriesDeadlock: a transaction chosen as a deadlock victim (1213)
// runs again and commits; the caller never sees the deadlock.
func TestInTx_RetriesDeadlock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	s := db.open(t)
	tenant := credential.DefaultTenant
	keys := []credential.Key{testKey(tenant, "a"), testKey(tenant, "b")}
	for i := range 20 {
		keys = append(keys, testKey(tenant, credential.KeyID(fmt.Sprintf("filler-%02d", i))))
	}
	mustCreate(t, s, keys...)

	// The other transaction holds b and many rows it changed, so that
	// InnoDB, which rolls back the transaction that did the least, picks
	// the store's as the victim.
	other, err := db.Admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	// Primary-key lookups only: at REPEATABLE READ a scan would lock a too.
	update := "UPDATE " + db.Name + ".api_keys SET name = 'other' WHERE nid = ? AND kind = ? AND key_id = ?"
	for _, k := range keys[1:] {
		if _, err := other.ExecContext(ctx, update, string(tenant), int64(k.Kind), string(k.ID)); err != nil {
			t.Fatalf("lock %s: %v", k.ID, err)
		}
	}

	lockedA := make(chan struct{})
	attempts := 0
	done := make(chan error, 1)
	go func() {
		done <- s.InTx(ctx, func(tx store.Tx) error {
			attempts++
			if _, err := tx.GetKey(ctx, tenant, credential.KindIssued, "a"); err != nil {
				return err
			}
			if attempts == 1 {
				close(lockedA)
			}
			b, err := tx.GetKey(ctx, tenant, credential.KindIssued, "b")
			if err != nil {
				return err
			}
			b.Name = "store"
			return tx.UpdateKey(ctx, b)
		})
	}()
	select {
	case <-lockedA:
	case err := <-done:
		t.Fatalf("InTx returned before it locked a: %v", err)
	}
	// Waits for a, which the store holds while it waits for b: a deadlock.
	if _, err := other.ExecContext(ctx, update, string(tenant), int64(credential.KindIssued), "a"); err != nil {
		t.Fatalf("the other transaction was the deadlock victim (%v); want the store's", err)
	}
	if err := other.Commit(); err != nil {
		t.Fatalf("commit the other transaction: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("InTx = %v, want the deadlock retried away", err)
	}
	if attempts != 2 {
		t.Errorf("fn ran %d times, want 2", attempts)
	}
	got, err := s.GetKey(ctx, tenant, credential.KindIssued, "b")
	if err != nil || got.Name != "store" {
		t.Errorf("b after the retry: name %q, %v; want the store's update", got.Name, err)
	}
}

// TestRoundTrip_Bytes: text and identifiers come back byte for byte.
// Identifiers compare as bytes: case, trailing spaces and Unicode
// normalization all distinguish them, and lists sort in byte order.
func TestRoundTrip_Bytes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestDB(t).open(t)
	tenant := credential.Tenant("tenant-ü")

	var note strings.Builder
	for note.Len() < 4000 {
		note.WriteString("密钥🔑clé—キー열쇠\u00e9e\u0301 ")
	}
	md := `{"note":"` + note.String() + `","pad":"`
	md += strings.Repeat("x", 4096-len(md)-2) + `"}`
	if len(md) != 4096 || !json.Valid([]byte(md)) {
		t.Fatalf("metadata is %d bytes (valid %t), want 4096 valid", len(md), json.Valid([]byte(md)))
	}
	k := testKey(tenant, "unicode")
	k.Name = "🔑 clé — 密钥 キー 열쇠 \u00e9 e\u0301"
	k.ActorID = "user:张伟"
	k.Scopes = []string{"読み取り", "emoji:🚀", `quote"back\slash`}
	k.Metadata = json.RawMessage(md)
	k.RevocationDescription = "révoqué 🙈"
	k.RequestID = "req-🔁"
	mustCreate(t, s, k)
	got, err := s.GetKey(ctx, tenant, k.Kind, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(k, got, cmp.Comparer(func(a, b json.RawMessage) bool { return bytes.Equal(a, b) })); d != "" {
		t.Errorf("unicode key mismatch (-want +got):\n%s", d)
	}
	if byReq, err := s.FindByRequestID(ctx, tenant, k.Kind, k.RequestID); err != nil || byReq.ID != k.ID {
		t.Errorf("FindByRequestID(%q) = %q, %v", k.RequestID, byReq.ID, err)
	}

	// Distinct under byte comparison, equal under many collations.
	ids := []credential.KeyID{"k", "k ", "K", "ß", "ss", "\u00e9", "e\u0301", "🔑", "a"}
	var distinct []credential.Key
	for i, id := range ids {
		d := testKey(tenant, id)
		d.RequestID = "r" + strings.Repeat(" ", i) // trailing spaces count
		d.ActorID = "actor " + string(id)
		distinct = append(distinct, d)
	}
	mustCreate(t, s, distinct...)
	for _, d := range distinct {
		byID, err := s.GetKey(ctx, tenant, d.Kind, d.ID)
		if err != nil || byID.RequestID != d.RequestID {
			t.Errorf("GetKey(%q) = request id %q, %v; want %q", d.ID, byID.RequestID, err, d.RequestID)
		}
		byReq, err := s.FindByRequestID(ctx, tenant, d.Kind, d.RequestID)
		if err != nil || byReq.ID != d.ID {
			t.Errorf("FindByRequestID(%q) = %q, %v; want %q", d.RequestID, byReq.ID, err, d.ID)
		}
		byActor, err := s.ListKeys(ctx, tenant, d.Kind, store.Filter{ActorID: d.ActorID, Limit: 10})
		if err != nil || len(byActor) != 1 || byActor[0].ID != d.ID {
			t.Errorf("ListKeys(actor %q) = %d keys, %v; want only %q", d.ActorID, len(byActor), err, d.ID)
		}
	}
	list, err := s.ListKeys(ctx, tenant, credential.KindIssued, store.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(ids), k.ID)
	slices.Sort(want) // Go compares strings byte by byte
	var gotIDs []credential.KeyID
	for _, l := range list {
		gotIDs = append(gotIDs, l.ID)
	}
	if d := cmp.Diff(want, gotIDs); d != "" {
		t.Errorf("ListKeys order mismatch (-want +got):\n%s", d)
	}
}

// TestBatch: 1000 keys created in one transaction read back byte for byte,
// with GetKeys and page by page.
func TestBatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestDB(t).open(t)
	tenant := credential.DefaultTenant
	want := make([]credential.Key, 1000)
	for i := range want {
		k := testKey(tenant, credential.KeyID(fmt.Sprintf("imp-%04d-密", i)))
		k.Kind = credential.KindImported
		k.Name = fmt.Sprintf("批量 %d 🔑", i)
		k.Scopes = []string{"payments:read", fmt.Sprintf("s-%d", i)}
		k.Metadata = json.RawMessage(fmt.Sprintf(`{"i":%d,"s":"ü"}`, i))
		k.RequestID = fmt.Sprintf("req-%d", i)
		want[i] = k
	}
	mustCreate(t, s, want...)

	ids := make([]credential.KeyID, len(want))
	for i, k := range want {
		ids[i] = k.ID
	}
	got, err := s.GetKeys(ctx, tenant, credential.KindImported, ids)
	if err != nil {
		t.Fatalf("GetKeys: %v", err)
	}
	sortKeys := cmpopts.SortSlices(func(a, b credential.Key) bool { return a.ID < b.ID })
	if d := cmp.Diff(want, got, sortKeys); d != "" {
		t.Errorf("GetKeys mismatch (-want +got):\n%s", d)
	}
	var paged []credential.Key
	f := store.Filter{Limit: 300}
	for {
		page, err := s.ListKeys(ctx, tenant, credential.KindImported, f)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		paged = append(paged, page...)
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	if d := cmp.Diff(want, paged); d != "" { // want is in ID order
		t.Errorf("ListKeys mismatch (-want +got):\n%s", d)
	}
}

// TestKilledConnections: the database drops the store's connections, as a
// restart or failover does. A call in flight fails at once with
// ErrUnavailable, never hangs and never hands out a driver error; the calls
// after it reconnect by themselves, without reopening the store.
func TestKilledConnections(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	s := db.open(t)
	tenant := credential.DefaultTenant
	k := testKey(tenant, "k")
	mustCreate(t, s, k)

	// A row lock held from the admin connection (whose database is not the
	// test's, so it is not killed) keeps the calls below in flight.
	holder, err := db.Admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.ExecContext(ctx, "SELECT key_id FROM "+db.Name+".api_keys WHERE key_id = 'k' FOR UPDATE"); err != nil {
		t.Fatalf("lock the key: %v", err)
	}

	for _, c := range []struct {
		name string
		call func() error
	}{
		{"InTx", func() error {
			return s.InTx(ctx, func(tx store.Tx) error {
				_, err := tx.GetKey(ctx, tenant, k.Kind, k.ID)
				return err
			})
		}},
		{"TouchLastUsed", func() error {
			return s.TouchLastUsed(ctx, tenant, k.Kind, []credential.KeyID{k.ID}, base)
		}},
	} {
		done := make(chan error, 1)
		go func() { done <- c.call() }()
		db.waitInFlight(t)
		if n := db.killAll(t); n == 0 {
			t.Fatalf("%s: no connection to kill", c.name)
		}
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second): // a watchdog: it returns at once
			t.Fatalf("%s did not return within 30s of its connection being killed", c.name)
		}
		t.Logf("%s on a killed connection: %v", c.name, err)
		if !errors.Is(err, credential.ErrUnavailable) {
			t.Errorf("%s on a killed connection: error = %v, want one wrapping ErrUnavailable", c.name, err)
		}
		var me *mysqldriver.MySQLError
		if errors.As(err, &me) || errors.Is(err, mysqldriver.ErrInvalidConn) {
			t.Errorf("%s on a killed connection: error %v unwraps to a driver error", c.name, err)
		}
	}
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}

	// The pool replaces the dead connections by itself.
	if _, err := s.GetKey(ctx, tenant, k.Kind, k.ID); err != nil {
		t.Errorf("GetKey after the kill: %v", err)
	}
	renamed := k
	renamed.Name = "after the kill"
	if err := s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateKey(ctx, renamed) }); err != nil {
		t.Errorf("UpdateKey after the kill: %v", err)
	}

	// Idle connections killed in between calls are replaced silently.
	if n := db.killAll(t); n == 0 {
		t.Fatal("no idle connection to kill")
	}
	if got, err := s.GetKey(ctx, tenant, k.Kind, k.ID); err != nil || got.Name != renamed.Name {
		t.Errorf("GetKey after idle connections were killed = %q, %v", got.Name, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after idle connections were killed: %v", err)
	}
}

// TestAppendEvent_CommitOrder: a transaction appending an event waits for
// an open transaction that appended one before it, so sequence order is
// commit order and a tailer never moves its cursor past an event that has
// yet to commit.
func TestAppendEvent_CommitOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	s := db.open(t)
	event := func(id credential.KeyID) credential.Event {
		return credential.Event{Tenant: credential.DefaultTenant, Kind: credential.KindIssued, KeyID: id, Type: credential.EventRevoked, Time: base}
	}

	appended, commit := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.InTx(ctx, func(tx store.Tx) error {
			if err := tx.AppendEvent(ctx, event("first")); err != nil {
				return err
			}
			close(appended)
			<-commit
			return nil
		})
	}()
	select {
	case <-appended:
	case err := <-firstDone:
		t.Fatalf("first transaction: %v", err)
	}
	secondDone := make(chan error, 1)
	go func() {
		secondDone <- s.InTx(ctx, func(tx store.Tx) error { return tx.AppendEvent(ctx, event("second")) })
	}()
	db.waitInFlight(t)
	select {
	case err := <-secondDone:
		t.Errorf("the second transaction committed (%v) while the first, which appended before it, was open", err)
	default:
	}
	close(commit)
	if err := <-firstDone; err != nil {
		t.Fatalf("first transaction: %v", err)
	}
	if err := <-secondDone; err != nil {
		t.Fatalf("second transaction: %v", err)
	}
	evs, err := s.EventsSince(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].KeyID != "first" || evs[1].KeyID != "second" || evs[0].Seq >= evs[1].Seq {
		t.Errorf("events = %+v, want first then second with increasing seq", evs)
	}
}

// TestOpen_LeastPrivilege: a user with only SELECT, INSERT, UPDATE and
// DELETE on the database can serve it once it is migrated, and is told to
// migrate before.
func TestOpen_LeastPrivilege(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := newTestDB(t)
	user, pass := "t_"+strings.ToLower(rand.Text())[:16], rand.Text()
	if _, err := db.Admin.ExecContext(ctx, "CREATE USER ?@'%' IDENTIFIED BY ?", user, pass); err != nil {
		t.Fatalf("create user: %v", err)
	}
	t.Cleanup(func() { _, _ = db.Admin.ExecContext(context.Background(), "DROP USER ?@'%'", user) })
	if _, err := db.Admin.ExecContext(ctx, "GRANT SELECT, INSERT, UPDATE, DELETE ON "+db.Name+".* TO ?@'%'", user); err != nil {
		t.Fatalf("grant: %v", err)
	}
	cfg, err := mysql.ParseDSN(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Driver.Clone()
	d.User, d.Passwd = user, pass
	dsn := "mysql://" + d.FormatDSN()

	if _, err := mysql.Open(ctx, dsn, mysql.Options{}); !errors.Is(err, migrate.ErrNotMigrated) {
		t.Fatalf("Open of a fresh database: error = %v, want one wrapping migrate.ErrNotMigrated", err)
	}
	if err := mysql.Migrate(ctx, db.DSN); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := mysql.Open(ctx, dsn, mysql.Options{})
	if err != nil {
		t.Fatalf("Open as a user without CREATE: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	k := testKey(credential.DefaultTenant, "k")
	err = s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.CreateKey(ctx, k); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, credential.Event{Tenant: k.Tenant, Kind: k.Kind, KeyID: k.ID, Type: credential.EventCreated, Time: base})
	})
	if err != nil {
		t.Fatalf("create a key and its event: %v", err)
	}
	if _, err := s.GetKey(ctx, k.Tenant, k.Kind, k.ID); err != nil {
		t.Errorf("GetKey: %v", err)
	}
}
