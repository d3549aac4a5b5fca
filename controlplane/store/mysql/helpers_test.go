package mysql_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/talos-project/talos/controlplane/store/mysql"
	"github.com/talos-project/talos/controlplane/store/sqlstore"
)

// dsnEnv names the server the tests use, in go-sql-driver's form
// (root@tcp(127.0.0.1:3306)/test) or as a mysql:// DSN. Each test creates a
// database of its own there and drops it when it ends.
const dsnEnv = "TALOS_TEST_MYSQL_DSN"

// testDB is a database of one test's own.
type testDB struct {
	Name  string
	DSN   string  // mysql:// DSN of the database
	Admin *sql.DB // connected to the server's DSN, not to Name
}

// newTestDB creates an empty database for t, dropped when t ends, or skips t
// when dsnEnv is unset.
func newTestDB(t testing.TB) testDB {
	t.Helper()
	raw := os.Getenv(dsnEnv)
	if raw == "" {
		t.Skip(dsnEnv + " is not set")
	}
	if !strings.HasPrefix(raw, "mysql://") {
		raw = "mysql://" + raw
	}
	cfg, err := mysql.ParseDSN(raw)
	if err != nil {
		t.Fatalf("%s: %v", dsnEnv, err)
	}
	admin := mustDB(t, cfg.Driver)

	name := "talos_test_" + strings.ToLower(rand.Text())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})

	d := cfg.Driver.Clone()
	d.DBName = name
	return testDB{Name: name, DSN: "mysql://" + d.FormatDSN() + "&max_conns=8", Admin: admin}
}

// mustDB opens a pool over d, closed when t ends.
func mustDB(t testing.TB, d *mysqldriver.Config) *sql.DB {
	t.Helper()
	c, err := mysqldriver.NewConnector(d)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// conn opens a pool on the test database itself.
func (db testDB) conn(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(db.DSN)
	if err != nil {
		t.Fatalf("ParseDSN: %v", err)
	}
	return mustDB(t, cfg.Driver)
}

// open opens the store on db, migrating it, and closes it when t ends.
func (db testDB) open(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := mysql.Open(t.Context(), db.DSN, mysql.Options{AutoMigrate: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// sessions returns the IDs of the server connections whose default database
// is db's, that is the store's (never the admin's).
func (db testDB) sessions(t testing.TB) []int64 {
	t.Helper()
	rows, err := db.Admin.QueryContext(t.Context(), "SELECT id FROM information_schema.processlist WHERE db = ?", db.Name)
	if err != nil {
		t.Fatalf("read processlist: %v", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("read processlist: %v", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read processlist: %v", err)
	}
	return ids
}

// killAll kills every connection to db's database and returns how many.
func (db testDB) killAll(t testing.TB) int {
	t.Helper()
	ids := db.sessions(t)
	for _, id := range ids {
		// One that ended meanwhile is "unknown thread", which is fine.
		_, _ = db.Admin.ExecContext(t.Context(), fmt.Sprintf("KILL %d", id))
	}
	return len(ids)
}

// waitInFlight polls until a statement runs on a connection to db's
// database, or fails t after 10s.
func (db testDB) waitInFlight(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := db.Admin.QueryRowContext(t.Context(),
			"SELECT COUNT(*) FROM information_schema.processlist WHERE db = ? AND command = 'Query'", db.Name).Scan(&n)
		if err != nil {
			t.Fatalf("read processlist: %v", err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no statement in flight after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
