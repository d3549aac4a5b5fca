package postgres_test

import (
	"testing"

	"github.com/talos-project/talos/controlplane/store/migrate/migratetest"
	"github.com/talos-project/talos/controlplane/store/postgres"
	"github.com/talos-project/talos/controlplane/store/postgres/pgtest"
)

// TestMigrateCommands: status reads only, up, down (refused on 0001_init
// with nothing changed, else reversed and reapplied) and force.
func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	sch := pgtest.NewSchema(t)
	migratetest.Check(t, migratetest.Backend{
		DSN: sch.DSN, Up: postgres.MigrateUp, Down: postgres.MigrateDown,
		Force: postgres.MigrateForce, Status: postgres.MigrationStatus, Tables: sch.Tables,
	})
}
