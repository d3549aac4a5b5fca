// Package config owns Talos's configuration: the typed [Config] tree, its
// defaults, loading from YAML/JSON files and TALOS_* environment variables,
// validation against the embedded JSON Schema (config.schema.json) and the
// cross-field rules of [Config.Validate], and the redacting [Secret] type.
//
// A configuration file written for Ory Talos loads unchanged: every key of
// Ory Talos's schema is accepted with the same meaning and default. Talos
// additions are documented in docs/configuration.md.
//
// Flow: cmd/talos calls [Load] once ([LoadProxy] for talos proxy, which
// checks only the proxy and log sections and so needs no issuer or HMAC
// secret). Values are applied in this order:
// [Defaults], then each file in order, then TALOS_* variables. Each file and
// the environment are checked against the JSON Schema on their own (so an error
// names the file or the variable and the key path), the merged result is
// decoded into a [Config], and [Config.Validate] checks rules that span fields
// and precomputes derived typed fields (for example HTTP.ClientIP), so
// components never parse configuration on a hot path. Components receive
// their section by value and never read the environment themselves.
//
// The package is a leaf: it imports no other package of this module. A
// [Config] is a plain value; it is safe for concurrent reads and nothing in
// this package mutates a Config after [Load] returns it.
package config
