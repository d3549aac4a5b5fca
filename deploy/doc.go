// Package deploy holds the deployment configurations of Talos: Envoy
// bootstraps (envoy/), Istio resources (istio/), and nginx and Caddy
// templates with rendered examples (nginx/, caddy/). See README.md.
//
// The sidecar injector (talos inject) is the Go package deploy/inject; this
// package has no Go code of its own. Its tests load the Envoy configs
// into Envoy's protos (go-control-plane) and validate them, check the Istio
// resources, and run real nginx and Caddy processes in front of the extauthz
// HTTP handler.
package deploy
