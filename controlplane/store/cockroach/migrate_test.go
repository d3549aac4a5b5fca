package cockroach_test

import (
	"testing"

	"github.com/talos-project/talos/controlplane/store/cockroach"
	"github.com/talos-project/talos/controlplane/store/migrate/migratetest"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
)

// TestMigrateCommands: CockroachDB's migrations (its 0001_init, PostgreSQL's
// 0002 with its down step) through the migration commands, on PostgreSQL.
func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	sch := pgtest.NewSchema(t)
	migratetest.Check(t, migratetest.Backend{
		DSN: cockroachDSN(sch), Up: cockroach.MigrateUp, Down: cockroach.MigrateDown,
		Force: cockroach.MigrateForce, Status: cockroach.MigrationStatus, Tables: sch.Tables,
	})
}
