// Package sqlite opens the SQLite backend of the control-plane store: the
// pure-Go modernc.org/sqlite driver, the SQLite sqlstore.Dialect and the
// embedded migrations.
//
// Every connection runs in WAL mode (readers never wait for the writer), with
// a busy timeout, foreign keys on, and write transactions that begin
// IMMEDIATE: a transaction takes the database's write lock before its first
// read, so concurrent read-check-write transactions (rotate, revoke) queue on
// the lock and each sees the commits before it, instead of failing when a
// read lock cannot be upgraded. Concurrency is therefore one writer at a time
// and many readers. An in-memory database (":memory:") lives in one
// connection, which every call shares.
//
// This package imports sqlstore, migrate and credential, plus the driver;
// nothing but cmd/talos and tests imports it.
package sqlite
