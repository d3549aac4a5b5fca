package inject

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/talos-project/talos/pkg/config"
)

// Config is the injector's configuration file (the Helm chart renders
// exactly this). Unknown keys are errors.
type Config struct {
	// Image is the sidecar image, repository:tag or repository@digest.
	// Required.
	Image string `json:"image"`
	// ImagePullPolicy of the sidecar; default IfNotPresent.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Upstream is the control plane's gRPC address (host:port), injected as
	// TALOS_PROXY_UPSTREAM. Required.
	Upstream string `json:"upstream"`
	// Tenant is injected as TALOS_PROXY_TENANT unless the pod's
	// talos.dev/tenant annotation names another; "" is the default
	// network.
	Tenant string `json:"tenant,omitempty"`
	// TokenSecret is the Secret key (in the pod's namespace) injected as
	// TALOS_PROXY_UPSTREAM_TOKEN; absent is {talos-sidecar-token, token}, an
	// empty name injects no token.
	TokenSecret *SecretKey `json:"tokenSecret,omitempty"`
	// ConfigMap, when set, is a ConfigMap (in the pod's namespace) whose
	// key talos.yaml is mounted read-only and passed as --config.
	ConfigMap string `json:"configMap,omitempty"`
	// Env are extra environment variables of the sidecar, after the
	// injected ones; they may not redefine those.
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Resources of the sidecar; a missing request or limit takes the
	// default (requests 50m CPU, 64Mi memory; limits 200m, 256Mi).
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// NativeSidecar injects an init container with restartPolicy Always
	// (Kubernetes 1.29 and later); false a regular container. Default true.
	NativeSidecar *bool `json:"nativeSidecar,omitempty"`
	// PrometheusScrape adds the prometheus.io/{scrape,port,path} pod
	// annotations (unless the pod has one of them). Default true.
	PrometheusScrape *bool `json:"prometheusScrape,omitempty"`
}

// SecretKey names one key of a Secret.
type SecretKey struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// Defaults of the configuration.
const (
	DefaultTokenSecretName = "talos-sidecar-token"
	DefaultTokenSecretKey  = "token"
)

// defaultResources are Talos's suggestion for an edge proxy, the chart's
// default as well.
var defaultResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
}

// LoadConfig reads and checks the configuration file at path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("injector config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("injector config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a configuration (YAML or JSON) strictly (unknown or
// duplicate keys are errors, key names match case-sensitively), fills the
// defaults and checks it.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := decodeYAMLStrict(data, &c); err != nil {
		return Config{}, err
	}
	if err := c.complete(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeYAMLStrict decodes one YAML (or JSON) document into v, rejecting
// duplicate and unknown keys and keys that match a field only when case is
// ignored.
func decodeYAMLStrict(data []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	return decodeJSONStrict(j, v)
}

// decodeJSONStrict is the strict JSON decoding of the Kubernetes API
// machinery: case-sensitive keys, no duplicate and no unknown keys.
func decodeJSONStrict(j []byte, v any) error {
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

var (
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	k8sNameRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	secretKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

// complete fills the defaults of c and checks it.
func (c *Config) complete() error {
	var errs []error
	fail := func(key, format string, args ...any) { errs = append(errs, fmt.Errorf(key+": "+format, args...)) }

	if c.Image == "" {
		fail("image", "is required")
	} else if strings.ContainsAny(c.Image, " \t\r\n") {
		fail("image", "must not contain whitespace (got %q)", c.Image)
	}
	switch c.ImagePullPolicy {
	case "":
		c.ImagePullPolicy = corev1.PullIfNotPresent
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		fail("imagePullPolicy", "must be Always, IfNotPresent or Never (got %q)", c.ImagePullPolicy)
	}
	if c.Upstream == "" {
		fail("upstream", "is required")
	} else if err := checkProxyEnv(c.Upstream, c.Tenant); err != nil {
		fail("upstream/tenant", "%v", err)
	}
	if c.TokenSecret == nil {
		c.TokenSecret = &SecretKey{Name: DefaultTokenSecretName, Key: DefaultTokenSecretKey}
	}
	if n := c.TokenSecret.Name; n != "" {
		if len(n) > 253 || !k8sNameRE.MatchString(n) {
			fail("tokenSecret.name", "must be a Kubernetes object name (got %q)", n)
		}
		if k := c.TokenSecret.Key; len(k) > 253 || !secretKeyRE.MatchString(k) {
			fail("tokenSecret.key", "must be a Secret data key (got %q)", k)
		}
	}
	if n := c.ConfigMap; n != "" && (len(n) > 253 || !k8sNameRE.MatchString(n)) {
		fail("configMap", "must be a Kubernetes object name (got %q)", n)
	}
	seen := map[string]bool{}
	for i, e := range c.Env {
		key := fmt.Sprintf("env[%d]", i)
		switch {
		case !envNameRE.MatchString(e.Name):
			fail(key+".name", "must be an environment variable name (got %q)", e.Name)
		case injectedEnv[e.Name]:
			fail(key+".name", "%s is set by the injector", e.Name)
		case seen[e.Name]:
			fail(key+".name", "%s appears twice", e.Name)
		}
		seen[e.Name] = true
		if e.Value != "" && e.ValueFrom != nil {
			fail(key, "value and valueFrom are mutually exclusive")
		}
	}
	if c.Resources.Claims != nil {
		fail("resources.claims", "is not supported")
	}
	c.Resources = withDefaultResources(c.Resources)
	if err := checkResources(c.Resources); err != nil {
		fail("resources", "%v", err)
	}
	if c.NativeSidecar == nil {
		c.NativeSidecar = new(true)
	}
	if c.PrometheusScrape == nil {
		c.PrometheusScrape = new(true)
	}
	return errors.Join(errs...)
}

// withDefaultResources returns r with each missing CPU and memory request
// and limit set to its default.
func withDefaultResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for name, q := range r.Requests {
		out.Requests[name] = q
	}
	for name, q := range r.Limits {
		out.Limits[name] = q
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := out.Requests[name]; !ok {
			out.Requests[name] = defaultResources.Requests[name]
		}
		if _, ok := out.Limits[name]; !ok {
			out.Limits[name] = defaultResources.Limits[name]
		}
	}
	return out
}

// checkResources reports a request above its limit.
func checkResources(r corev1.ResourceRequirements) error {
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			return fmt.Errorf("%s request %s is above its limit %s", name, req.String(), lim.String())
		}
	}
	return nil
}

// checkProxyEnv checks the upstream and tenant the sidecar will get with
// the sidecar's own configuration rules (pkg/config), so that the injector
// never starts a sidecar that refuses its settings.
func checkProxyEnv(upstream, tenant string) error {
	env := []string{envUpstream + "=" + upstream}
	if tenant != "" {
		env = append(env, envTenant+"="+tenant)
	}
	_, err := config.LoadProxy(nil, env)
	return err
}
