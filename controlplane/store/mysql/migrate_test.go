package mysql_test

import (
	"testing"

	"github.com/talos-project/talos/controlplane/store/migrate/migratetest"
	"github.com/talos-project/talos/controlplane/store/mysql"
)

// TestMigrateCommands: status reads only, up, down (refused on 0001_init
// with nothing changed, else reversed and reapplied) and force.
func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	migratetest.Check(t, migratetest.Backend{
		DSN: db.DSN, Up: mysql.MigrateUp, Down: mysql.MigrateDown,
		Force: mysql.MigrateForce, Status: mysql.MigrationStatus,
		Tables: func(t testing.TB) []string {
			return migratetest.Names(t, db.Admin,
				`SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1`, db.Name)
		},
	})
}
