package postgres

import "github.com/jackc/pgx/v5"

// ConnConfig exposes the connection settings ParseDSN made, for tests.
func ConnConfig(c Config) *pgx.ConnConfig { return c.conn }
