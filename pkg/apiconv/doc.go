// Package apiconv is the only hand-written code that knows both the wire types
// of pkg/api and the domain of pkg/credential (plus the plain input structs of
// the keys service, which are domain values too). It converts in both
// directions and validates what can only be checked on the wire shape
// (durations, CIDR strings, update masks).
//
// Functions are pure and safe for concurrent use. Conversion errors wrap
// credential.ErrInvalidArgument with a public message naming the field.
package apiconv
