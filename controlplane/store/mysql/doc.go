// Package mysql opens the MySQL backend of the control-plane store: the
// go-sql-driver/mysql driver, the MySQL sqlstore.Dialect and the embedded
// migrations. It is written for MySQL 8 and tested on MariaDB 10.11.
//
// # Connections
//
// A DSN is "mysql://user:pass@host:3306/db?params" (see ParseDSN). Whatever
// it says, every connection is set up the way sqlstore needs it: utf8mb4,
// matched rather than changed rows reported as affected (UpdateKey tells "no
// such key" from "nothing changed" by that count), no time parsing (every
// timestamp is a BIGINT of unix microseconds), client-side parameter
// interpolation (one round trip per query instead of three), one statement
// per call except on the migration connection, and a strict sql_mode, so an
// over-long value is an error rather than silently truncated.
//
// # Schema
//
// Identifiers (tenant, key ID, actor, request ID, kid) are VARBINARY: they
// compare and sort byte by byte, case-sensitively and with trailing spaces
// significant, as on SQLite and PostgreSQL. utf8mb4_bin would not do: on
// MariaDB and MySQL 8 it is a PAD SPACE collation, under which "r" and "r "
// are the same request ID. Free text is utf8mb4; JSON is kept as text rather
// than in MySQL's JSON type, which would reorder and reformat it.
//
// # Concurrency
//
// Transactions run at the server's isolation level (REPEATABLE READ by
// default). Tx.GetKey reads with FOR UPDATE, so concurrent read-check-write
// transactions queue on the row. Deadlocks (1213) and lock wait timeouts
// (1205) are retried by sqlstore with bounded backoff. Appending an event
// first locks the one row of the events_lock table until commit, so event
// sequence numbers, which AUTO_INCREMENT hands out at insert, are in commit
// order. Migrations of one database are serialized across processes by a
// GET_LOCK named after it.
//
// # Privileges
//
// Migrating needs CREATE, SELECT and INSERT on the database (later
// migrations may need ALTER and INDEX too). Serving a migrated database needs only SELECT, INSERT, UPDATE
// and DELETE: Open reads schema_migrations without creating it.
//
// This package imports sqlstore, migrate and credential, plus the driver;
// nothing but cmd/talos and tests imports it.
package mysql
