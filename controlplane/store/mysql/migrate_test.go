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
			rows, err := db.Admin.QueryContext(t.Context(),
				`SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1`, db.Name)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					t.Fatal(err)
				}
				out = append(out, n)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		},
	})
}
