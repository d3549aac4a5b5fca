// Package extauthz turns a proxy's authorization question into a
// credential.Presented, asks an Authorizer, applies the route's requirements
// and renders the decision for the proxy.
//
// Two transports share one decision function:
//
//   - Server.Check is the Envoy ext_authz v3 gRPC service
//     (envoy.service.auth.v3.Authorization). Allows carry upstream headers,
//     headers_to_remove and dynamic metadata; denies are always an explicit
//     DeniedHttpResponse with a status, a WWW-Authenticate challenge where it
//     applies and a small JSON body.
//   - Server.HTTPHandler serves HTTP mode: Envoy's http_service, nginx
//     auth_request and Traefik/Caddy forward-auth, plus a Talos-compatible
//     POST /v2alpha1/admin/apiKeys:verify proxy.
//
// The transports first reduce a request to a Request (FromCheckRequest,
// FromHTTP), the few typed facts a decision needs, so the decision never
// looks at a protobuf message or an *http.Request. Bad input (no credential,
// several different credentials, oversize or non-printable values) is denied
// locally, without asking the Authorizer; nothing here panics or returns a
// gRPC error for it.
//
// The credential never reaches an error message, a log line or a response.
//
// extauthz imports pkg/* and the Envoy protos. It never imports sidecar or
// controlplane: the sidecar gives it its Authorizer. A Server is immutable
// after New and safe for concurrent use.
package extauthz
