// Package credential is the domain of Talos: keys, tenants, states, the facts a
// caller presents for verification, verification results, change events and the
// closed set of sentinel errors every layer translates to and from.
//
// It imports only the standard library. It knows nothing of SQL, Redis, gRPC,
// HTTP, protobuf or configuration; every other package adapts to it.
//
// All types are plain values. They are safe for concurrent use as long as
// callers do not mutate shared slices; functions here never retain or mutate
// slices they are given.
package credential
