// Package postgres opens the PostgreSQL backend of the control-plane store:
// pgx's database/sql driver, the PostgreSQL sqlstore.Dialect and the embedded
// migrations. It also holds what any database speaking PostgreSQL's protocol
// shares (DSN parsing, the pool, migration runs, opening a checked store) as
// a Flavor, from which package cockroach derives CockroachDB's backend.
//
// # Concurrency and ordering
//
// Transactions run at the server's default isolation (READ COMMITTED unless
// the DSN or the server says otherwise). Read-check-write transactions
// (rotate, revoke) lock their row with SELECT … FOR UPDATE, so concurrent ones
// queue and each sees the commit before it. A transaction that fails with a
// serialization failure or a deadlock (SQLSTATE 40001, 40P01), which happens
// at REPEATABLE READ and SERIALIZABLE or when lock orders cross, is run again
// with bounded backoff (sqlstore.RetryAttempts). Every transaction that
// appends an outbox event takes one transaction-scoped advisory lock first,
// so event sequence order equals commit order and a tailer reading by cursor
// never skips a late commit.
//
// # Secrets
//
// A DSN may hold a password. Nothing here logs a DSN or puts one in an error;
// errors name the host and database only.
//
// This package imports sqlstore, migrate and credential, plus pgx; nothing
// but cmd/talos, package cockroach and tests imports it. Stores it opens are
// safe for concurrent use.
package postgres
