package main

import (
	"bytes"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	ory "github.com/ory/client-go"
)

// TestE2E_ReadReplica runs a control plane whose verify traffic reads a
// second PostgreSQL schema (db.read_replica_dsn) that the test keeps in sync
// by copying rows, standing for streaming replication.
func TestE2E_ReadReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	admin := os.Getenv("TALOS_TEST_POSTGRES_DSN")
	if admin == "" {
		t.Skip("TALOS_TEST_POSTGRES_DSN is not set")
	}
	primary, replica := postgresSchemaDSN(t, admin), postgresSchemaDSN(t, admin)
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"migrate", "up", "--database", replica}, nil, &out, &errOut); err != nil {
		t.Fatalf("migrate the replica: %v %s", err, errOut.String())
	}
	srv := startServer(t, "TALOS_DB_DSN="+primary, "TALOS_DB_AUTO_MIGRATE=true", "TALOS_DB_READ_REPLICA_DSN="+replica)
	c := sdk(srv.http)

	issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(ory.IssueApiKeyRequest{Name: ptr("replicated"), ActorId: ptr("a")}).Execute()
	issued = mustOK(t, "issue", issued, resp, err)
	wantVerdict(t, c, issued.GetSecret(), false, ory.VERIFICATIONERRORCODE_VERIFICATION_ERROR_NOT_FOUND)

	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	schemaOf := func(dsn string) string {
		u, _ := url.Parse(dsn)
		return u.Query().Get("search_path")
	}
	if _, err := db.ExecContext(t.Context(), "INSERT INTO "+schemaOf(replica)+".api_keys SELECT * FROM "+schemaOf(primary)+".api_keys"); err != nil {
		t.Fatalf("sync the replica: %v", err)
	}
	v := wantVerdict(t, c, issued.GetSecret(), true, "")
	if v.GetKeyId() != issued.IssuedApiKey.GetKeyId() {
		t.Errorf("verify via the replica = %+v", v)
	}
	if strings.Contains(srv.log.String(), issued.GetSecret()) {
		t.Error("a credential appeared in the log")
	}
}
