// Package sqlstore is the one database/sql implementation of store.Store. What
// differs between databases (placeholder style, row locking, how driver errors
// map to sentinels, transaction retries, event ordering) is a Dialect value;
// every query is written once, in SQL that PostgreSQL, MySQL, CockroachDB and
// SQLite all accept. Schemas and migrations live in the per-database packages
// (sqlite, and later postgres, mysql, cockroach), which build a Dialect, open
// the *sql.DB and call New.
//
// # Schema
//
// Both kinds of key share one table, api_keys, keyed by (nid, kind, key_id);
// request_id is unique per (nid, kind) and NULL when absent. Timestamps are
// BIGINT unix microseconds in UTC, which every database stores exactly, so
// reads return UTC times at microsecond precision. Scopes, metadata and allowed
// CIDRs are JSON text. The outbox is the events table, whose seq the database
// assigns. Every key query filters on nid and kind, so one tenant never sees
// another's rows.
//
// # Errors
//
// Driver errors never escape: each is classified once, by code, into an error
// that wraps exactly one credential sentinel (see Store). Errors name the
// operation and the key ID, never secret material.
//
// # Concurrency
//
// A Store is safe for concurrent use. GetKey on the Store, the verify path,
// uses a statement prepared once by New. InTx runs its function in one
// transaction; see Dialect for how each database serializes the
// read-check-write of rotate and revoke.
//
// This package imports only store, credential and the standard library; it
// never imports a driver.
package sqlstore
