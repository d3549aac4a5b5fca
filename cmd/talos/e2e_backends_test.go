package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// testBackend is a database the end-to-end tests run a control plane on.
type testBackend struct {
	name string
	// env configures the server for a fresh, empty database of its own.
	env []string
}

// backends returns SQLite and, when their TALOS_TEST_* variables are set,
// PostgreSQL, the CockroachDB dialect (over PostgreSQL) and MySQL, each
// with a schema or database of its own that is dropped when t ends.
func backends(t *testing.T) []testBackend {
	t.Helper()
	out := []testBackend{{name: "sqlite", env: []string{"TALOS_DB_DSN=sqlite://" + filepath.Join(t.TempDir(), "e2e.db")}}}
	if dsn := os.Getenv("TALOS_TEST_POSTGRES_DSN"); dsn != "" {
		pg := postgresSchemaDSN(t, dsn)
		out = append(out,
			testBackend{"postgres", []string{"TALOS_DB_DSN=" + pg, "TALOS_DB_AUTO_MIGRATE=true"}},
			testBackend{"cockroach", []string{"TALOS_DB_DSN=" + strings.Replace(postgresSchemaDSN(t, dsn), "postgres://", "cockroach://", 1), "TALOS_DB_AUTO_MIGRATE=true"}},
		)
	} else {
		t.Log("TALOS_TEST_POSTGRES_DSN is not set: skipping PostgreSQL and CockroachDB")
	}
	if dsn := os.Getenv("TALOS_TEST_MYSQL_DSN"); dsn != "" {
		out = append(out, testBackend{"mysql", []string{"TALOS_DB_DSN=" + mysqlDatabaseDSN(t, dsn), "TALOS_DB_AUTO_MIGRATE=true"}})
	} else {
		t.Log("TALOS_TEST_MYSQL_DSN is not set: skipping MySQL")
	}
	return out
}

func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// postgresSchemaDSN creates a schema and returns a DSN whose search_path is it.
func postgresSchemaDSN(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("TALOS_TEST_POSTGRES_DSN: %v", err)
	}
	db := stdlib.OpenDB(*cfg)
	schema := uniqueName("talos_e2e_")
	if _, err := db.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// mysqlDatabaseDSN creates a database and returns a mysql:// DSN for it.
func mysqlDatabaseDSN(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := gomysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		t.Fatalf("TALOS_TEST_MYSQL_DSN: %v", err)
	}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	name := uniqueName("talos_e2e_")
	if _, err := db.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
		db.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP DATABASE " + name)
		db.Close()
	})
	user := url.User(cfg.User)
	if cfg.Passwd != "" {
		user = url.UserPassword(cfg.User, cfg.Passwd)
	}
	return fmt.Sprintf("mysql://%s@%s/%s", user.String(), cfg.Addr, name)
}
