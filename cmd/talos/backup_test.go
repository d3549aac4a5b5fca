package main

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ory "github.com/ory/client-go"
	_ "modernc.org/sqlite" // the "sqlite" driver, to look inside a plain copy
)

// runCLI runs `talos <args>` with env and returns stdout, stderr and the exit
// code main would exit with.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, env, &out, &errb)
	if err != nil {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), exitCodeOf(err)
}

// TestE2E_BackupRestore: keys issued up to an online backup of a running
// control plane (the last one a moment before, still in the WAL) verify after
// the database is wiped and the backup restored into a fresh directory with
// the same secret; a restore under another secret is refused and writes
// nothing; OUT and an existing database are never replaced without --force.
func TestE2E_BackupRestore(t *testing.T) {
	dir := t.TempDir()
	env := serverEnv(dir, "0")
	srv, stop := launchServer(t, []string{"serve"}, env)
	c := sdk(srv.http)

	// A generated signing key, sealed under the HMAC secret, is in the store
	// once the JWKS is asked for.
	code, jwksBefore := do(t, "GET", srv.http+"/.well-known/jwks.json", nil)
	if code != 200 || !bytes.Contains(jwksBefore, []byte(`"kid"`)) {
		t.Fatalf("jwks = %d %s", code, jwksBefore)
	}
	var secrets []string
	for i := range 5 {
		issued, resp, err := c.ApiKeysAPI.AdminIssueApiKey(t.Context()).IssueApiKeyRequest(ory.IssueApiKeyRequest{Name: ptr("k"), ActorId: ptr("a" + string(rune('0'+i)))}).Execute()
		issued = mustOK(t, "issue", issued, resp, err)
		secrets = append(secrets, issued.GetSecret())
	}
	db := filepath.Join(dir, "talos.db")
	if fi, err := os.Stat(db + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the WAL of the running server is empty or missing (%v): the test would not show a backup includes it", err)
	}
	plain := filepath.Join(t.TempDir(), "plain.db")
	copyFile(t, db, plain)

	out := filepath.Join(t.TempDir(), "backup.db")
	if stdout, stderr, code := runCLI(t, env, "backup", out); code != 0 {
		t.Fatalf("backup: exit %d: %s %s", code, stdout, stderr)
	}
	// A second backup does not replace the first without --force.
	before := readFile(t, out)
	if _, stderr, code := runCLI(t, env, "backup", out); code != exitNegative || !strings.Contains(stderr, "--force") {
		t.Fatalf("backup over an existing file: exit %d, %s; want %d and a hint at --force", code, stderr, exitNegative)
	}
	if !bytes.Equal(before, readFile(t, out)) {
		t.Fatal("a refused backup changed the existing file")
	}
	if _, stderr, code := runCLI(t, env, "backup", "--force", out); code != 0 {
		t.Fatalf("backup --force: exit %d: %s", code, stderr)
	}
	stop()

	// A plain copy of the live file misses what is still in the WAL (SQLite
	// checkpoints only past 1000 pages or when the last connection closes):
	// here every key, and even the tables (-1).
	if n := keyRows(t, plain); n >= len(secrets) {
		t.Fatalf("a plain copy of the live file holds all %d keys: the WAL was checkpointed, the test shows nothing", n)
	}
	if n := keyRows(t, out); n != len(secrets) {
		t.Fatalf("backup holds %d keys, want %d", n, len(secrets))
	}

	// The machine is lost.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	// Restore under another secret: refused, nothing written.
	wrong := t.TempDir()
	wrongEnv := append(serverEnv(wrong, "0"), "TALOS_SECRETS_HMAC_CURRENT=another-secret-that-is-long-enough-987654321")
	if _, stderr, code := runCLI(t, wrongEnv, "restore", out); code != exitNegative || !strings.Contains(stderr, "HMAC secret does not match") {
		t.Fatalf("restore with another secret: exit %d, %q; want %d and a clear error", code, stderr, exitNegative)
	}
	if ents, _ := os.ReadDir(wrong); len(ents) != 0 {
		t.Fatalf("a refused restore left %v behind", ents)
	}

	// Restore into a fresh directory with the same secret.
	fresh := t.TempDir()
	freshEnv := serverEnv(fresh, "0")
	if stdout, stderr, code := runCLI(t, freshEnv, "restore", out); code != 0 || !strings.Contains(stdout, "1 signing keys opened") {
		t.Fatalf("restore: exit %d: %s %s", code, stdout, stderr)
	}
	if _, stderr, code := runCLI(t, freshEnv, "restore", out); code != exitNegative || !strings.Contains(stderr, "--force") {
		t.Fatalf("restore over an existing database: exit %d, %s; want %d", code, stderr, exitNegative)
	}
	if _, stderr, code := runCLI(t, freshEnv, "restore", "--force", out); code != 0 {
		t.Fatalf("restore --force: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runCLI(t, freshEnv, "restore", "--force", plain+".missing"); code == 0 {
		t.Fatalf("restore of a missing file succeeded: %s", stderr)
	}
	notTalos := filepath.Join(t.TempDir(), "other.db")
	other, err := sql.Open("sqlite", notTalos)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if _, stderr, code := runCLI(t, freshEnv, "restore", "--force", notTalos); code != exitNegative || !strings.Contains(stderr, "not a Talos database") {
		t.Fatalf("restore of another SQLite file: exit %d, %s", code, stderr)
	}

	srv2, _ := launchServer(t, []string{"serve"}, freshEnv)
	c2 := sdk(srv2.http)
	for _, s := range secrets {
		wantVerdict(t, c2, s, true, "")
	}
	if _, jwksAfter := do(t, "GET", srv2.http+"/.well-known/jwks.json", nil); !bytes.Equal(jwksBefore, jwksAfter) {
		t.Fatalf("JWKS after restore = %s, want the one before %s", jwksAfter, jwksBefore)
	}
}

// TestBackup_OtherBackendsRefused: PostgreSQL and MySQL point at their own
// tools, with what must be kept.
func TestBackup_OtherBackendsRefused(t *testing.T) {
	for _, dsn := range []string{"postgres://u@127.0.0.1:1/db", "mysql://u@tcp(127.0.0.1:1)/db"} {
		env := append(serverEnv(t.TempDir(), "0"), "TALOS_DB_DSN="+dsn)
		for _, cmd := range []string{"backup", "restore"} {
			_, stderr, code := runCLI(t, env, cmd, filepath.Join(t.TempDir(), "x"))
			if code != exitUsage || !strings.Contains(stderr, "docs/operations.md") || !strings.Contains(stderr, "secrets.hmac") {
				t.Errorf("%s on %s: exit %d, %s", cmd, dsn, code, stderr)
			}
		}
	}
}

func keyRows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM api_keys`).Scan(&n); err != nil {
		return -1
	}
	return n
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
