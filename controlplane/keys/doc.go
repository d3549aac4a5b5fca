// Package keys is the control plane's service layer: the use cases issue, get,
// list, update, rotate, revoke, delete, import, batch import, verify, batch
// verify and self-revoke. Business rules live here and nowhere else; the store
// only persists, the adapters (grpcapi, httpapi) only translate.
//
// Inputs and outputs are pkg/credential types and the plain input structs of
// this package; keys never sees a protobuf type. Errors are credential
// sentinels, mostly wrapped in *credential.Error with a public reason.
//
// A Service is safe for concurrent use. Every state change runs inside one
// store transaction together with its outbox event, so a read-check-write
// (rotate, revoke) cannot race another.
package keys
