// Package inject adds the Talos sidecar (talos proxy) to Kubernetes pods: as
// a mutating admission webhook ([Handler], served by [Server] for talos
// inject serve) and offline on YAML manifests ([Transform], for talos
// inject), with one injection code path ([Injector]) behind both.
//
// The sidecar is an authorization service, not a traffic proxy: injection
// adds one container (talos-proxy, a native sidecar by default) and, when
// configured, a ConfigMap volume; it never touches the pod's network (no
// iptables). The mesh's Envoy reaches the sidecar on the pod's loopback
// (deploy/istio). See docs/kubernetes.md for the annotations, the
// decisions (opt-in/opt-out, name clashes, denials) and how it is tested.
//
// The package is the only one of the module that imports k8s.io types; the
// control plane and the sidecar never import it (deps_test.go). It imports
// pkg/config to check the sidecar settings it injects with the sidecar's own
// rules, and pkg/serve and pkg/tlsconf for its listener.
//
// An [Injector] and a [Handler] are immutable after construction and safe
// for concurrent use.
package inject
