// Package pgtest gives each test a PostgreSQL schema of its own on the
// server that TALOS_TEST_POSTGRES_DSN names, so that tests run in parallel
// and runs never collide, and drops it when the test ends. It also holds the
// checks that the postgres and cockroach backends both run beyond storetest:
// a byte-exact batch round trip and event commit order. Any test that needs
// a real PostgreSQL store can use it.
//
// It is for tests only, and needs PostgreSQL 14 or later and a user that may
// create schemas and roles and terminate sessions. It imports store,
// credential, pgx's database/sql driver and go-cmp. Its functions are safe
// for concurrent use.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/talos-project/talos/controlplane/store/migrate/migratetest"
)

// EnvDSN is the environment variable holding the DSN of the test server, as
// a user that may create schemas and roles and terminate sessions.
const EnvDSN = "TALOS_TEST_POSTGRES_DSN"

// AdminDSN returns the DSN of the test server, or skips t when EnvDSN is
// unset.
func AdminDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skip(EnvDSN + " is not set")
	}
	return dsn
}

// Schema is a schema created for one test.
type Schema struct {
	// Name is the schema's name, talos_test_<random>; it is also the
	// application_name of every connection made with DSN, and the name of
	// the role that owns the schema when there is one.
	Name string
	// DSN connects to the test server with Name as the only schema on the
	// search_path and as the application_name.
	DSN string
	// Admin is a connection pool to the test server as the admin user.
	Admin *sql.DB
}

// NewSchema creates an empty schema for t, as the admin user, and drops it
// when t ends, after ending the sessions still connected with its DSN.
// It skips t when EnvDSN is unset.
func NewSchema(t testing.TB) *Schema {
	t.Helper()
	return newSchema(t, false)
}

// NewSchemaWithRole is NewSchema, but the schema is owned by a new role of
// the same name, which the DSN logs in as and which is dropped with it, so
// that SetLogin can shut the test's store out of the server.
func NewSchemaWithRole(t testing.TB) *Schema {
	t.Helper()
	return newSchema(t, true)
}

func newSchema(t testing.TB, withRole bool) *Schema {
	t.Helper()
	admin := AdminDSN(t)
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDSN, err)
	}
	db := stdlib.OpenDB(*cfg)
	s := &Schema{Name: "talos_test_" + strings.ToLower(rand.Text()), Admin: db}
	ident := pgx.Identifier{s.Name}.Sanitize()

	// Cleanups run last in, first out: the schema is dropped after the
	// cleanups its test registers later, such as closing its store.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.TerminateSessions(t)
		if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", s.Name, err)
		}
		if withRole {
			if _, err := db.ExecContext(ctx, "DROP ROLE IF EXISTS "+ident); err != nil {
				t.Errorf("drop role %s: %v", s.Name, err)
			}
		}
		_ = db.Close()
	})

	ctx := t.Context()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDSN, err)
	}
	if withRole {
		password := rand.Text()
		if _, err := db.ExecContext(ctx, "CREATE ROLE "+ident+" LOGIN PASSWORD '"+password+"'"); err != nil {
			t.Fatalf("create role %s: %v", s.Name, err)
		}
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+ident+" AUTHORIZATION "+ident); err != nil {
			t.Fatalf("create schema %s: %v", s.Name, err)
		}
		u.User = url.UserPassword(s.Name, password)
	} else if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("create schema %s: %v", s.Name, err)
	}
	q := u.Query()
	q.Set("search_path", s.Name)
	q.Set("application_name", s.Name)
	u.RawQuery = q.Encode()
	s.DSN = u.String()
	return s
}

// TerminateSessions ends every server session connected with s.DSN, as a
// database that goes away does, and waits until they are gone.
func (s *Schema) TerminateSessions(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1`, s.Name)
	if err != nil {
		t.Errorf("terminate the sessions of %s: %v", s.Name, err)
	}
}

// SetLogin lets the schema's role log in, or not. While it cannot, every
// new connection made with s.DSN is refused. It needs NewSchemaWithRole.
func (s *Schema) SetLogin(t testing.TB, login bool) {
	t.Helper()
	stmt := "ALTER ROLE " + pgx.Identifier{s.Name}.Sanitize() + " NOLOGIN"
	if login {
		stmt = "ALTER ROLE " + pgx.Identifier{s.Name}.Sanitize() + " LOGIN"
	}
	if _, err := s.Admin.ExecContext(t.Context(), stmt); err != nil {
		t.Fatalf("alter role %s: %v", s.Name, err)
	}
}

// Tables lists the tables of s, as the admin user sees them.
func (s *Schema) Tables(t testing.TB) []string {
	t.Helper()
	return migratetest.Names(t, s.Admin,
		`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, s.Name)
}
