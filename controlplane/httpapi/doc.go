// Package httpapi serves the Talos v2alpha1 HTTP/JSON API: the grpc-gateway
// mux over grpcapi (called in process), plus the hand-written routes (health,
// the bare RFC 7517 JWKS) and the middleware every request passes: panic
// recovery, request IDs, security headers, the body-size limit, client-IP
// resolution and request logging.
//
// Errors are written once, in the AIP-193 envelope Ory Talos uses, with HTTP
// statuses from pkg/errcode. Bodies are decoded strictly: unknown fields,
// wrong types and invalid UTF-8 are 400s.
//
// Handlers are safe for concurrent use.
package httpapi
