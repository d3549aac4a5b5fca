// Package grpcapi serves the Talos v2alpha1 services over gRPC (and, in
// process, behind the HTTP gateway of httpapi): it converts wire requests to
// keys-service calls and errors to gRPC statuses with AIP-193 ErrorInfo, once,
// through pkg/errcode.
//
// It is safe for concurrent use. It imports keys, pkg/api, pkg/apiconv and
// pkg/errcode; nothing imports it but httpapi, controlplane and cmd.
package grpcapi
