package inject

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/talos-project/talos/pkg/config"
)

// Names the injector reads and writes on pods.
const (
	// ContainerName is the injected container.
	ContainerName = "talos-proxy"
	// VolumeName is the ConfigMap volume injected with Config.ConfigMap.
	VolumeName = "talos-proxy-config"
	// NoTokenVolumeName is the empty volume mounted over the service-account
	// token path of the sidecar: the ServiceAccount admission plugin skips
	// a container that has a mount there, so the sidecar, which calls no
	// Kubernetes API, never holds the pod's API token.
	NoTokenVolumeName = "talos-proxy-no-sa-token"
	// ServiceAccountTokenPath is where Kubernetes mounts a pod's API token.
	ServiceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// ConfigMountPath is where that volume is mounted.
	ConfigMountPath = "/etc/talos-proxy"
	// ConfigKey is the ConfigMap key passed to the sidecar as --config.
	ConfigKey = "talos.yaml"

	// AnnotationInject (label or annotation) "false" opts a pod out,
	// "true" in (the webhook's objectSelector decides where it is called).
	AnnotationInject = "talos.dev/inject"
	// AnnotationStatus is written on injection ("injected"); a pod that
	// carries it is never injected again.
	AnnotationStatus = "talos.dev/status"
	// AnnotationVersion is the injector's version, written with the status.
	AnnotationVersion = "talos.dev/injector-version"
	// AnnotationTenant overrides Config.Tenant (a tenant UUID).
	AnnotationTenant = "talos.dev/tenant"
	// The resource annotations override Config.Resources.
	AnnotationCPURequest    = "talos.dev/proxy-cpu-request"
	AnnotationCPULimit      = "talos.dev/proxy-cpu-limit"
	AnnotationMemoryRequest = "talos.dev/proxy-memory-request"
	AnnotationMemoryLimit   = "talos.dev/proxy-memory-limit"

	// StatusInjected is the value of AnnotationStatus.
	StatusInjected = "injected"
)

// Ports of the sidecar (docs/configuration.md: proxy.extauthz.port,
// proxy.http.port, proxy.metrics.port).
const (
	PortAuthz   = 9191
	PortHTTP    = 4430
	PortMetrics = 4432
)

// The environment variables the injector sets (docs/configuration.md).
const (
	envUpstream    = "TALOS_PROXY_UPSTREAM"
	envTenant      = "TALOS_PROXY_TENANT"
	envToken       = "TALOS_PROXY_UPSTREAM_TOKEN"
	envMetricsHost = "TALOS_PROXY_METRICS_HOST"
)

var injectedEnv = map[string]bool{envUpstream: true, envTenant: true, envToken: true, envMetricsHost: true}

// sidecarUID is the image's nonroot user and group.
const sidecarUID = 65532

// Injector decides whether and how to inject one pod. It is immutable and
// safe for concurrent use.
type Injector struct {
	cfg     Config
	version string
}

// New returns an injector for a configuration from [ParseConfig] or
// [LoadConfig]; version is written into AnnotationVersion.
func New(cfg Config, version string) (*Injector, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	return &Injector{cfg: cfg, version: version}, nil
}

// Outcome is what injection does with one pod.
type Outcome int

const (
	// Injected: the pod gets the sidecar.
	Injected Outcome = iota + 1
	// Skipped: the pod is left as it is (opted out, already injected).
	Skipped
)

// DeniedError is a pod the injector refuses: its annotations are invalid,
// or it cannot run the sidecar. The message names the offending
// annotation or field; it is shown to whoever created the pod.
type DeniedError struct{ Reason string }

func (e *DeniedError) Error() string { return "talos sidecar injection refused: " + e.Reason }

func denied(format string, args ...any) error {
	return &DeniedError{Reason: fmt.Sprintf(format, args...)}
}

// Mutation is the change injection makes to one pod: the annotations to
// set, the sidecar container and, with a ConfigMap, its volume. It is the
// one description behind both the JSONPatch of the webhook ([Mutation.Patch])
// and the offline transformation ([Mutation.Apply]).
type Mutation struct {
	Annotations map[string]string
	Container   corev1.Container
	// Native puts Container among the init containers (restartPolicy
	// Always), else among the containers.
	Native bool
	// Volumes are added to the pod: the empty one over the token path and,
	// with a ConfigMap, the sidecar's config.
	Volumes []corev1.Volume
}

// Plan decides for a pod (or a pod template) given its metadata and spec.
// It returns (Skipped, reason, nil), (Injected, mutation, nil) or a
// *DeniedError. meta and spec are not modified.
func (in *Injector) Plan(meta metav1.ObjectMeta, spec corev1.PodSpec) (Outcome, *Mutation, string, error) {
	for _, on := range []struct {
		what string
		m    map[string]string
	}{{"label", meta.Labels}, {"annotation", meta.Annotations}} {
		switch v, ok := on.m[AnnotationInject]; {
		case !ok, v == "true":
		case v == "false":
			return Skipped, nil, "opted out by " + on.what + " " + AnnotationInject, nil
		default:
			return 0, nil, "", denied("%s %s must be \"true\" or \"false\" (got %q)", on.what, AnnotationInject, v)
		}
	}
	if _, ok := meta.Annotations[AnnotationStatus]; ok {
		return Skipped, nil, "already injected (" + AnnotationStatus + ")", nil
	}
	if err := checkPod(spec); err != nil {
		return 0, nil, "", err
	}
	tenant := in.cfg.Tenant
	if t, ok := meta.Annotations[AnnotationTenant]; ok {
		if !config.ValidTenant(t) {
			return 0, nil, "", denied("annotation %s must be a tenant UUID (got %q)", AnnotationTenant, t)
		}
		tenant = t
	}
	res, err := resourcesFor(in.cfg.Resources, meta.Annotations)
	if err != nil {
		return 0, nil, "", err
	}
	m := &Mutation{
		Annotations: map[string]string{AnnotationStatus: StatusInjected, AnnotationVersion: in.version},
		Container:   in.container(tenant, res),
		Native:      *in.cfg.NativeSidecar,
	}
	if *in.cfg.PrometheusScrape && !hasAny(meta.Annotations, "prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path") {
		m.Annotations["prometheus.io/scrape"] = "true"
		m.Annotations["prometheus.io/port"] = strconv.Itoa(PortMetrics)
		m.Annotations["prometheus.io/path"] = "/metrics"
	}
	m.Volumes = []corev1.Volume{{Name: NoTokenVolumeName, VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: new(resource.MustParse("1Ki"))}}}}
	if in.cfg.ConfigMap != "" {
		m.Volumes = append(m.Volumes, corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: in.cfg.ConfigMap},
			Items:                []corev1.KeyToPath{{Key: ConfigKey, Path: ConfigKey}},
		}}})
	}
	for _, v := range m.Volumes {
		if slices.ContainsFunc(spec.Volumes, func(pv corev1.Volume) bool { return pv.Name == v.Name }) {
			return 0, nil, "", denied("the pod already has a volume named %s", v.Name)
		}
	}
	return Injected, m, "", nil
}

func hasAny(m map[string]string, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// checkPod refuses pods the sidecar cannot run in: one that already has a
// container of its name (not injected by us: those carry the status
// annotation) or uses one of its ports, and host-network pods (every
// injected pod on a node would bind the same host ports).
func checkPod(spec corev1.PodSpec) error {
	if spec.HostNetwork {
		return denied("hostNetwork pods cannot get a per-pod sidecar: its ports %d, %d and %d would be the node's; set %s: \"false\"",
			PortAuthz, PortHTTP, PortMetrics, AnnotationInject)
	}
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range all {
		if c.Name == ContainerName {
			return denied("the pod already has a container named %s that the injector did not add (no %s annotation); rename it, or set %s: \"false\"",
				ContainerName, AnnotationStatus, AnnotationInject)
		}
		for _, p := range c.Ports {
			if p.ContainerPort == PortAuthz || p.ContainerPort == PortHTTP || p.ContainerPort == PortMetrics {
				return denied("container %s uses port %d, which the sidecar listens on", c.Name, p.ContainerPort)
			}
			if strings.HasPrefix(p.Name, "talos-") {
				return denied("container %s has a port named %s; the talos- port names are the sidecar's", c.Name, p.Name)
			}
		}
	}
	return nil
}

// resourcesFor applies the resource annotations to base.
func resourcesFor(base corev1.ResourceRequirements, ann map[string]string) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: base.Requests.DeepCopy(), Limits: base.Limits.DeepCopy()}
	for _, a := range []struct {
		key  string
		list corev1.ResourceList
		name corev1.ResourceName
	}{
		{AnnotationCPURequest, r.Requests, corev1.ResourceCPU},
		{AnnotationCPULimit, r.Limits, corev1.ResourceCPU},
		{AnnotationMemoryRequest, r.Requests, corev1.ResourceMemory},
		{AnnotationMemoryLimit, r.Limits, corev1.ResourceMemory},
	} {
		v, ok := ann[a.key]
		if !ok {
			continue
		}
		q, err := parseQuantity(v)
		if err != nil {
			return r, denied("annotation %s: %q is not a valid positive quantity", a.key, v)
		}
		a.list[a.name] = q
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := r.Requests[name], r.Limits[name]
		if req.Cmp(lim) > 0 {
			key := AnnotationCPURequest
			if name == corev1.ResourceMemory {
				key = AnnotationMemoryRequest
			}
			return r, denied("annotation %s (or the injector's default): %s request %s is above its limit %s", key, name, req.String(), lim.String())
		}
	}
	return r, nil
}

// parseQuantity parses a resource quantity that the API server would
// accept for a container: positive, and with at most milli precision
// for CPU (finer values are rounded up by the API server, which is
// harmless, so they are accepted).
func parseQuantity(s string) (resource.Quantity, error) {
	if len(s) > 64 {
		return resource.Quantity{}, errors.New("too long")
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return q, err
	}
	if q.Sign() <= 0 {
		return q, errors.New("not positive")
	}
	return q, nil
}

// container is the sidecar.
func (in *Injector) container(tenant string, res corev1.ResourceRequirements) corev1.Container {
	c := corev1.Container{
		Name:            ContainerName,
		Image:           in.cfg.Image,
		ImagePullPolicy: in.cfg.ImagePullPolicy,
		Args:            []string{"proxy"},
		Env: []corev1.EnvVar{
			{Name: envUpstream, Value: in.cfg.Upstream},
			// The kubelet probes the pod IP; ext_authz and the HTTP
			// listener stay on loopback, where the mesh's Envoy calls
			// them.
			{Name: envMetricsHost, Value: "0.0.0.0"},
		},
		Ports: []corev1.ContainerPort{
			{Name: "talos-authz", ContainerPort: PortAuthz, Protocol: corev1.ProtocolTCP},
			{Name: "talos-http", ContainerPort: PortHTTP, Protocol: corev1.ProtocolTCP},
			{Name: "talos-metrics", ContainerPort: PortMetrics, Protocol: corev1.ProtocolTCP},
		},
		Resources:                res,
		ReadinessProbe:           probe("/health/ready", 5, 3),
		LivenessProbe:            probe("/health/alive", 10, 3),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             new(true),
			RunAsUser:                new(int64(sidecarUID)),
			RunAsGroup:               new(int64(sidecarUID)),
			ReadOnlyRootFilesystem:   new(true),
			AllowPrivilegeEscalation: new(false),
			Privileged:               new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if tenant != "" {
		c.Env = append(c.Env, corev1.EnvVar{Name: envTenant, Value: tenant})
	}
	if s := in.cfg.TokenSecret; s.Name != "" {
		c.Env = append(c.Env, corev1.EnvVar{Name: envToken, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.Name}, Key: s.Key,
		}}})
	}
	for _, e := range in.cfg.Env {
		c.Env = append(c.Env, *e.DeepCopy())
	}
	c.VolumeMounts = []corev1.VolumeMount{{Name: NoTokenVolumeName, MountPath: ServiceAccountTokenPath, ReadOnly: true}}
	if in.cfg.ConfigMap != "" {
		c.Args = append(c.Args, "--config", ConfigMountPath+"/"+ConfigKey)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: VolumeName, MountPath: ConfigMountPath, ReadOnly: true})
	}
	if *in.cfg.NativeSidecar {
		// The kubelet starts the pod's next containers once this probe
		// passes: the sidecar listens. Readiness (the control plane
		// reached) is left to the readiness probe, so a control-plane
		// outage does not hold every new pod in its init phase.
		c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
		c.StartupProbe = probe("/health/alive", 1, 30)
	}
	return c
}

func probe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString("talos-metrics"), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    period,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

// Apply makes the mutation on meta and spec in place (the offline path).
func (m *Mutation) Apply(meta *metav1.ObjectMeta, spec *corev1.PodSpec) {
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	for k, v := range m.Annotations {
		meta.Annotations[k] = v
	}
	for _, v := range m.Volumes {
		spec.Volumes = append(spec.Volumes, *v.DeepCopy())
	}
	c := *m.Container.DeepCopy()
	if m.Native {
		spec.InitContainers = append(spec.InitContainers, c)
	} else {
		spec.Containers = append(spec.Containers, c)
	}
}
