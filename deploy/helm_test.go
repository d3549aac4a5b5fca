package deploy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/talos-project/talos/deploy/inject"
	"github.com/talos-project/talos/pkg/config"
)

// The chart is rendered and linted by Helm's own packages (helm.sh/helm/v4,
// pinned in go.mod), as `helm lint --strict` and `helm template` would, with
// a fixed Kubernetes version and no cluster: `lookup` finds nothing, so every
// generated secret is new. Every rendered object is then decoded strictly
// into its k8s.io/api type (unknown and duplicate fields fail), or into the
// small structs below for the kinds k8s.io/api does not have, and checked.

const (
	chartDir     = "helm/talos"
	releaseName  = "talos"
	releaseNS    = "talos"
	fakeKubeVer  = "v1.34.0"
	chartCIDir   = "helm/talos/ci"
	hookKey      = "helm.sh/hook"
	hookWeight   = "helm.sh/hook-weight"
	checksumKey  = "checksum/config"
	cpComponent  = "control-plane"
	componentKey = "app.kubernetes.io/component"
)

var kubeVersion = common.KubeVersion{Version: fakeKubeVer, Major: "1", Minor: "34"}

// object is one rendered document.
type object struct {
	source string // the template it came from
	raw    []byte
	kind   string
	name   string
	ns     string
	hook   string
	typed  runtime.Object // k8s.io/api kinds
	custom any            // the kinds below
}

// rendering is what `helm template` gives for one set of values.
type rendering struct {
	objs  []*object
	notes string
	vals  map[string]any
	// external are the Secrets the values refer to that the chart does not
	// render (existingSecret, the token Secret of injected namespaces): name
	// -> key -> value, as the test makes them up.
	external map[string]map[string]string
}

// Minimal strict types for the custom resources the chart renders.
type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type serviceMonitor struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		NamespaceSelector struct {
			MatchNames []string `yaml:"matchNames"`
		} `yaml:"namespaceSelector"`
		Endpoints []struct {
			Port          string `yaml:"port"`
			Path          string `yaml:"path"`
			Scheme        string `yaml:"scheme"`
			Interval      string `yaml:"interval"`
			ScrapeTimeout string `yaml:"scrapeTimeout"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type certManagerIssuer struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		SelfSigned *struct{} `yaml:"selfSigned"`
	} `yaml:"spec"`
}

type certManagerCertificate struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		SecretName  string   `yaml:"secretName"`
		Duration    string   `yaml:"duration"`
		RenewBefore string   `yaml:"renewBefore"`
		CommonName  string   `yaml:"commonName"`
		DNSNames    []string `yaml:"dnsNames"`
		PrivateKey  struct {
			Algorithm      string `yaml:"algorithm"`
			Size           int    `yaml:"size"`
			RotationPolicy string `yaml:"rotationPolicy"`
		} `yaml:"privateKey"`
		IssuerRef struct {
			Name  string `yaml:"name"`
			Kind  string `yaml:"kind"`
			Group string `yaml:"group"`
		} `yaml:"issuerRef"`
	} `yaml:"spec"`
}

// customKinds decodes the kinds k8s.io/api lacks.
var customKinds = map[string]func() any{
	"monitoring.coreos.com/v1/ServiceMonitor":  func() any { return new(serviceMonitor) },
	"cert-manager.io/v1/Issuer":                func() any { return new(certManagerIssuer) },
	"cert-manager.io/v1/Certificate":           func() any { return new(certManagerCertificate) },
	"security.istio.io/v1/AuthorizationPolicy": func() any { return new(authorizationPolicy) },
	"networking.istio.io/v1/ServiceEntry":      func() any { return new(serviceEntry) },
	"install.istio.io/v1alpha1/IstioOperator":  func() any { return new(istioOperator) },
}

var strictSerializer = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeStrict decodes data into v with unknown fields rejected.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// readValues reads a values file of the ci/ directory.
func readValues(t testing.TB, name string) map[string]any {
	t.Helper()
	v, err := common.ReadValuesFile(filepath.Join(chartCIDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// with returns a deep copy of vals with the dotted paths set, as --set does.
func with(vals map[string]any, set map[string]any) map[string]any {
	out := deepCopy(vals)
	for path, v := range set {
		m := out
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = v
	}
	return out
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = deepCopy(sub)
		}
		out[k] = v
	}
	return out
}

// renderChart renders like `helm template talos deploy/helm/talos -n talos
// -f <values> --kube-version 1.34`, values schema included.
func renderChart(ch *chart.Chart, vals map[string]any) (*rendering, error) {
	return renderWith(ch, vals, nil)
}

// renderWith renders with lookup answered by cluster (nil: an empty
// cluster, as under helm template).
func renderWith(ch *chart.Chart, vals map[string]any, cluster engine.ClientProvider) (*rendering, error) {
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	rv, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: releaseName, Namespace: releaseNS, Revision: 1, IsInstall: true}, caps, false)
	if err != nil {
		return nil, err
	}
	var out map[string]string
	if cluster == nil {
		out, err = engine.Render(ch, rv)
	} else {
		out, err = engine.RenderWithClientProvider(ch, rv, cluster)
	}
	if err != nil {
		return nil, err
	}
	r := &rendering{vals: vals, external: map[string]map[string]string{}}
	for _, name := range slices.Sorted(maps.Keys(out)) {
		content := out[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = content
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for doc := range strings.SplitSeq(content, "\n---") {
			if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" || onlyComments(doc) {
				continue
			}
			o, err := decodeObject(name, []byte(doc))
			if err != nil {
				return nil, err
			}
			r.objs = append(r.objs, o)
		}
	}
	return r, nil
}

func onlyComments(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// decodeObject decodes one document strictly into its type.
func decodeObject(source string, doc []byte) (*object, error) {
	var head struct {
		APIVersion string     `yaml:"apiVersion"`
		Kind       string     `yaml:"kind"`
		Metadata   objectMeta `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	o := &object{source: source, raw: doc, kind: head.Kind, name: head.Metadata.Name,
		ns: head.Metadata.Namespace, hook: head.Metadata.Annotations[hookKey]}
	if mk, ok := customKinds[head.APIVersion+"/"+head.Kind]; ok {
		v := mk()
		if err := decodeStrict(doc, v); err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", source, head.Kind, head.Metadata.Name, err)
		}
		o.custom = v
		return o, nil
	}
	obj, gvk, err := strictSerializer.Decode(doc, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %s %s: %w", source, head.Kind, head.Metadata.Name, err)
	}
	if gvk.GroupVersion().String() != head.APIVersion || gvk.Kind != head.Kind {
		return nil, fmt.Errorf("%s: decoded %v for %s %s", source, gvk, head.APIVersion, head.Kind)
	}
	o.typed = obj
	return o, nil
}

func mustRender(t testing.TB, ch *chart.Chart, vals map[string]any) *rendering {
	t.Helper()
	r, err := renderChart(ch, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// find returns the typed objects of type T.
func find[T runtime.Object](r *rendering) []T {
	var out []T
	for _, o := range r.objs {
		if v, ok := o.typed.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func findCustom[T any](r *rendering) []*T {
	var out []*T
	for _, o := range r.objs {
		if v, ok := o.custom.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// pod is a pod template of a rendered workload.
type pod struct {
	owner    string // Kind/name
	selector *metav1.LabelSelector
	spec     *corev1.PodTemplateSpec
}

func pods(r *rendering) []pod {
	var out []pod
	for _, d := range find[*appsv1.Deployment](r) {
		out = append(out, pod{"Deployment/" + d.Name, d.Spec.Selector, &d.Spec.Template})
	}
	for _, d := range find[*appsv1.DaemonSet](r) {
		out = append(out, pod{"DaemonSet/" + d.Name, d.Spec.Selector, &d.Spec.Template})
	}
	for _, j := range find[*batchv1.Job](r) {
		out = append(out, pod{"Job/" + j.Name, nil, &j.Spec.Template})
	}
	return out
}

func allContainers(s *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range s.InitContainers {
		out = append(out, &s.InitContainers[i])
	}
	for i := range s.Containers {
		out = append(out, &s.Containers[i])
	}
	return out
}

// ciCase is one values file of ci/ with the Secrets it assumes exist.
type ciCase struct {
	file     string
	external map[string]map[string]string
}

const fakeToken = "external-secret-value-0123456789abcdefghij"

var ciCases = []ciCase{
	{"sqlite-single-values.yaml", nil},
	{"postgres-ha-values.yaml", map[string]map[string]string{
		"talos-secrets": {
			"dsn":          "postgres://talos:external-db-password@pg.db.svc:5432/talos?sslmode=verify-full",
			"hmacCurrent":  fakeToken + "-hmac",
			"adminToken":   fakeToken + "-admin",
			"sidecarToken": fakeToken + "-sidecar",
			"redisSecret":  fakeToken + "-redis",
		},
	}},
	{"injected-redis-values.yaml", map[string]map[string]string{
		"talos-sidecar-token": {"token": fakeToken + "-token"},
		"talos-sidecar-redis": {"secret": fakeToken + "-redis", "password": "redis-password-external"},
	}},
	{"istio-values.yaml", nil},
	{"injected-certmanager-values.yaml", map[string]map[string]string{
		"orders-talos-token": {"sidecar-token": fakeToken + "-token"},
	}},
}

// renderCI renders every ci/ values file (and the defaults), once.
func renderCI(t *testing.T) map[string]*rendering {
	t.Helper()
	ch := loadChart(t)
	out := map[string]*rendering{"defaults": mustRender(t, ch, map[string]any{})}
	for _, c := range ciCases {
		r, err := renderChart(ch, readValues(t, c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		r.external = c.external
		out[c.file] = r
	}
	return out
}

func TestHelmCIValuesCovered(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(chartCIDir, "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, c := range ciCases {
		listed = append(listed, filepath.Join(chartCIDir, c.file))
	}
	slices.Sort(files)
	slices.Sort(listed)
	if !slices.Equal(files, listed) {
		t.Errorf("ci values files %v, but the test knows %v", files, listed)
	}
}

// TestHelmLint is `helm lint --strict`: warnings fail too.
func TestHelmLint(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, vals map[string]any) {
		res := lint.RunAll(chartDir, vals, releaseNS, lint.WithKubeVersion(&kubeVersion))
		if res.ChartDir == "" {
			t.Fatal("lint ran nothing")
		}
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint: %s", m)
			}
		}
	}
	t.Run("defaults", func(t *testing.T) { run(t, map[string]any{}) })
	for _, c := range ciCases {
		t.Run(c.file, func(t *testing.T) { run(t, readValues(t, c.file)) })
	}
	t.Run("catches a broken value", func(t *testing.T) {
		res := lint.RunAll(chartDir, map[string]any{"controlPlane": map[string]any{"replica": 2}}, releaseNS,
			lint.WithKubeVersion(&kubeVersion))
		failed := false
		for _, m := range res.Messages {
			failed = failed || m.Severity >= support.WarningSev
		}
		if !failed {
			t.Error("lint accepted controlPlane.replica (a typo the schema must reject)")
		}
	})
}

// check is one semantic rule over a rendering.
type check struct {
	name string
	fn   func(r *rendering) []error
}

var helmChecks = []check{
	{"containers are locked down", checkSecurityContexts},
	{"probes use declared ports", checkProbes},
	{"services select pods", checkSelectors},
	{"no secret in a ConfigMap", checkNoSecretInConfigMaps},
	{"secrets by secretKeyRef", checkSecretRefs},
	{"grace period covers the drain", checkGracePeriod},
	{"configs load", checkConfigsLoad},
	{"hooks are ordered", checkHooks},
	{"webhook", checkWebhook},
	{"istio", checkIstio},
	{"names and namespaces", checkNames},
}

func TestHelmTemplate(t *testing.T) {
	t.Parallel()
	for name, r := range renderCI(t) {
		t.Run(name, func(t *testing.T) {
			if len(r.objs) == 0 {
				t.Fatal("rendered nothing")
			}
			for _, c := range helmChecks {
				for _, err := range c.fn(r) {
					t.Errorf("%s: %v", c.name, err)
				}
			}
		})
	}
}

func kinds(r *rendering) []string {
	var out []string
	for _, o := range r.objs {
		out = append(out, o.kind+"/"+o.name)
	}
	slices.Sort(out)
	return out
}

// TestHelmTemplate_Objects pins what each values file deploys.
func TestHelmTemplate_Objects(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		"defaults": {"ConfigMap/talos", "Deployment/talos", "PersistentVolumeClaim/talos-data", "Secret/talos",
			"Service/talos", "ServiceAccount/talos"},
		"sqlite-single-values.yaml": {"ConfigMap/talos", "Deployment/talos", "Ingress/talos-public",
			"PersistentVolumeClaim/talos-data", "Secret/talos", "Service/talos", "ServiceAccount/talos"},
		"postgres-ha-values.yaml": {"ConfigMap/talos", "ConfigMap/talos-migrate", "ConfigMap/talos-proxy",
			"Deployment/talos", "Deployment/talos-proxy", "HorizontalPodAutoscaler/talos", "Ingress/talos-admin",
			"Ingress/talos-public", "Job/talos-migrate", "PodDisruptionBudget/talos", "PodDisruptionBudget/talos-proxy",
			"Service/talos", "Service/talos-proxy", "ServiceAccount/talos", "ServiceAccount/talos-proxy",
			"ServiceMonitor/talos"},
		"injected-redis-values.yaml": {"ConfigMap/talos", "ConfigMap/talos-injector", "Deployment/talos",
			"Deployment/talos-injector", "MutatingWebhookConfiguration/talos-injector-talos",
			"PodDisruptionBudget/talos-injector", "Secret/talos", "Secret/talos-injector-tls", "Service/talos",
			"Service/talos-injector", "ServiceAccount/talos", "ServiceAccount/talos-injector"},
		"istio-values.yaml": {"AuthorizationPolicy/talos-authz", "ConfigMap/talos", "ConfigMap/talos-istio-mesh",
			"ConfigMap/talos-proxy", "DaemonSet/talos-proxy", "Deployment/talos", "Secret/talos", "Service/talos",
			"Service/talos-proxy", "ServiceAccount/talos", "ServiceAccount/talos-proxy"},
		"injected-certmanager-values.yaml": {"AuthorizationPolicy/talos-authz", "Certificate/talos-injector",
			"ConfigMap/talos", "ConfigMap/talos-injector", "ConfigMap/talos-istio-mesh", "ConfigMap/talos-migrate",
			"Deployment/talos", "Deployment/talos-injector", "Issuer/talos-injector", "Job/talos-migrate",
			"MutatingWebhookConfiguration/talos-injector-talos", "PodDisruptionBudget/talos-injector", "Secret/talos",
			"Service/talos", "Service/talos-injector", "ServiceAccount/talos", "ServiceAccount/talos-injector",
			"ServiceEntry/talos-proxy-local"},
	}
	for name, r := range renderCI(t) {
		if got := kinds(r); !slices.Equal(got, want[name]) {
			t.Errorf("%s renders\n  %v\nwant\n  %v", name, got, want[name])
		}
	}
}

func TestHelmTemplate_Refusals(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	cases := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"sqlite with 2 replicas", map[string]any{"controlPlane.replicas": 2},
			"controlPlane.replicas is 2 but the database is SQLite"},
		{"sqlite by explicit DSN with 3 replicas", map[string]any{"controlPlane.replicas": 3, "controlPlane.db.dsn": "sqlite:///var/lib/talos/x.db"},
			"controlPlane.replicas is 3 but the database is SQLite"},
		{"sqlite driver with existingSecret and 2 replicas", map[string]any{"controlPlane.replicas": 2, "existingSecret": "s", "controlPlane.db.driver": "sqlite"},
			"exactly 1 replica"},
		{"sqlite with autoscaling", map[string]any{"controlPlane.autoscaling.enabled": true},
			"controlPlane.autoscaling.enabled with SQLite"},
		{"sqlite with a PDB", map[string]any{"controlPlane.podDisruptionBudget.enabled": true}, "would block every node drain"},
		{"sqlite with a migration job", map[string]any{"controlPlane.migration.mode": "job"}, "the Job cannot reach the database"},
		{"sqlite off the volume", map[string]any{"controlPlane.db.dsn": "sqlite:///tmp/talos.db"}, "must live on the volume"},
		{"existingSecret without a driver", map[string]any{"existingSecret": "s"}, "controlPlane.db.driver is required with existingSecret"},
		{"existingSecret and a DSN", map[string]any{"existingSecret": "s", "controlPlane.db.driver": "postgres", "controlPlane.db.dsn": "postgres://x"},
			"would be ignored"},
		{"driver contradicts DSN", map[string]any{"controlPlane.db.driver": "mysql", "controlPlane.db.dsn": "postgres://x"}, "is a postgres DSN"},
		{"unknown scheme", map[string]any{"controlPlane.db.dsn": "oracle://x"}, "unknown scheme"},
		{"HMAC secret in the config", map[string]any{"controlPlane.config.secrets": map[string]any{"hmac": map[string]any{"current": strings.Repeat("s", 40)}}},
			"controlPlane.config.secrets: secrets never go in the ConfigMap"},
		{"DSN in the config", map[string]any{"controlPlane.config.db": map[string]any{"dsn": "postgres://u:p@db/t"}}, "controlPlane.config.db.dsn"},
		{"admin tokens in the config", map[string]any{"controlPlane.config.serve": map[string]any{"admin": map[string]any{"auth": map[string]any{"bearer_tokens": []any{strings.Repeat("t", 40)}}}}},
			"controlPlane.config.serve.admin.auth.bearer_tokens"},
		{"shutdown in the config", map[string]any{"controlPlane.config.serve": map[string]any{"shutdown": map[string]any{"timeout": "1m"}}},
			"set controlPlane.shutdown instead"},
		{"upstream token in the sidecar config", map[string]any{"sidecar.mode": "deployment", "sidecar.config": map[string]any{"proxy": map[string]any{"upstream_token": strings.Repeat("t", 40)}}},
			"sidecar.config.proxy.upstream_token"},
		{"injected Redis without a Secret", map[string]any{"sidecar.mode": "injected", "sidecar.redis.addrs": []any{"r:6379"}}, "needs sidecar.redis.existingSecret"},
		{"istio without a sidecar", map[string]any{"istio.enabled": true}, "istio.enabled needs a sidecar"},
		{"admin ingress without hosts", map[string]any{"controlPlane.ingress.admin.enabled": true}, "controlPlane.ingress.admin.hosts"},
		{"unknown sidecar mode", map[string]any{"sidecar.mode": "mesh"}, "/sidecar/mode"},
		{"schema: unknown key", map[string]any{"controlPlane.replica": 2}, "replica"},
		{"schema: short HMAC secret", map[string]any{"secret.hmacCurrent": "short"}, "hmacCurrent"},
		{"schema: bad failure policy", map[string]any{"injector.failurePolicy": "Open"}, "failurePolicy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderChart(ch, with(map[string]any{}, c.set))
			if err == nil {
				t.Fatalf("rendered; want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
	t.Run("postgres with 2 replicas renders", func(t *testing.T) {
		r := mustRender(t, ch, with(map[string]any{}, map[string]any{
			"controlPlane.db.dsn": "postgres://u:p@db:5432/talos", "controlPlane.replicas": 2}))
		d := deploymentNamed(t, r, "talos")
		if *d.Spec.Replicas != 2 || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
			t.Errorf("replicas %d strategy %s, want 2 RollingUpdate", *d.Spec.Replicas, d.Spec.Strategy.Type)
		}
		if len(find[*corev1.PersistentVolumeClaim](r)) != 0 {
			t.Error("a PVC without SQLite")
		}
	})
}

func deploymentNamed(t testing.TB, r *rendering, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range find[*appsv1.Deployment](r) {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s in %v", name, kinds(r))
	return nil
}

func TestHelmTemplate_SQLite(t *testing.T) {
	t.Parallel()
	r := mustRender(t, loadChart(t), map[string]any{})
	d := deploymentNamed(t, r, "talos")
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %s, want Recreate: two pods must never open one SQLite file", d.Spec.Strategy.Type)
	}
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d", *d.Spec.Replicas)
	}
	var claim string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "data" && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	pvcs := find[*corev1.PersistentVolumeClaim](r)
	if len(pvcs) != 1 || pvcs[0].Name != claim {
		t.Fatalf("data volume claims %q; PVCs %v", claim, kinds(r))
	}
	dsn := secretValue(r, "talos", "dsn")
	c := d.Spec.Template.Spec.Containers[0]
	var mounted bool
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.Name == "data" && !m.ReadOnly && strings.HasPrefix(strings.TrimPrefix(dsn, "sqlite://"), m.MountPath+"/"))
	}
	if !mounted {
		t.Errorf("the SQLite file %s is not on the writable data volume", dsn)
	}
	// The initContainer migrates on the same volume.
	if len(d.Spec.Template.Spec.InitContainers) != 1 || !slices.Equal(d.Spec.Template.Spec.InitContainers[0].Args[:2], []string{"migrate", "up"}) {
		t.Errorf("init containers %v, want talos migrate up", d.Spec.Template.Spec.InitContainers)
	}
	if len(find[*networkingv1.Ingress](r)) != 0 {
		t.Error("an Ingress by default; the admin API must stay inside the cluster unless asked")
	}
}

func secretValue(r *rendering, name, key string) string {
	for _, s := range find[*corev1.Secret](r) {
		if s.Name == name {
			return string(s.Data[key])
		}
	}
	return r.external[name][key]
}

func TestHelmTemplate_Ingress(t *testing.T) {
	t.Parallel()
	r := renderCI(t)["postgres-ha-values.yaml"]
	paths := map[string][]string{}
	for _, ing := range find[*networkingv1.Ingress](r) {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				paths[ing.Name] = append(paths[ing.Name], string(*p.PathType)+" "+p.Path)
				if p.Backend.Service.Name != "talos" || p.Backend.Service.Port.Name != "http" {
					t.Errorf("%s: backend %+v", ing.Name, p.Backend.Service)
				}
			}
		}
	}
	// The public surface only: self-revoke and the JWKS documents
	// (docs/api.md), nothing under /v2alpha1/admin.
	wantPublic := []string{"Exact /v2alpha1/apiKeys:selfRevoke", "Exact /v2alpha1/derivedKeys/jwks.json", "Exact /.well-known/jwks.json"}
	if !slices.Equal(paths["talos-public"], wantPublic) {
		t.Errorf("public ingress paths %v, want %v", paths["talos-public"], wantPublic)
	}
	if !slices.Equal(paths["talos-admin"], []string{"Prefix /"}) {
		t.Errorf("admin ingress paths %v", paths["talos-admin"])
	}
}

func TestHelmTemplate_ConfigChecksum(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	base := readValues(t, "postgres-ha-values.yaml")
	sums := func(vals map[string]any) map[string]string {
		r := mustRender(t, ch, vals)
		out := map[string]string{}
		for _, p := range pods(r) {
			out[p.owner] = p.spec.Annotations[checksumKey]
		}
		for _, cm := range find[*corev1.ConfigMap](r) {
			if data, ok := cm.Data["talos.yaml"]; ok {
				// The annotation sums the file without the final newline
				// of the ConfigMap's block scalar.
				out["ConfigMap/"+cm.Name] = fmt.Sprintf("%x", sha256.Sum256([]byte(strings.TrimSuffix(data, "\n"))))
			}
		}
		return out
	}
	a, again := sums(base), sums(base)
	if !maps.Equal(a, again) {
		t.Fatalf("the checksums differ between two renders of the same values: %v %v", a, again)
	}
	for _, owner := range []string{"Deployment/talos", "Deployment/talos-proxy"} {
		if a[owner] == "" {
			t.Fatalf("%s has no %s annotation", owner, checksumKey)
		}
	}
	if a["Deployment/talos"] != a["ConfigMap/talos"] {
		t.Errorf("the control plane's checksum %s is not that of its ConfigMap %s", a["Deployment/talos"], a["ConfigMap/talos"])
	}
	cp := sums(with(base, map[string]any{"controlPlane.config.log": map[string]any{"level": "debug"}}))
	if cp["Deployment/talos"] == a["Deployment/talos"] {
		t.Error("the control plane's checksum did not change with its config")
	}
	if cp["Deployment/talos-proxy"] != a["Deployment/talos-proxy"] {
		t.Error("the proxy's checksum changed with the control plane's config")
	}
	px := sums(with(base, map[string]any{"sidecar.config": map[string]any{"log": map[string]any{"level": "debug"}}}))
	if px["Deployment/talos-proxy"] == a["Deployment/talos-proxy"] {
		t.Error("the proxy's checksum did not change with its config")
	}
}

func TestHelmTemplate_Upgrade(t *testing.T) {
	t.Parallel()
	// The job mode's hooks: the Secret and the ConfigMap copy exist before
	// the Job runs, at install and at upgrade.
	r := renderCI(t)["postgres-ha-values.yaml"]
	var job *batchv1.Job
	for _, j := range find[*batchv1.Job](r) {
		job = j
	}
	if job == nil {
		t.Fatal("no migration Job")
	}
	if job.Annotations[hookKey] != "pre-install,pre-upgrade" {
		t.Errorf("Job hook %q", job.Annotations[hookKey])
	}
	c := job.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"migrate", "up", "--config", "/etc/talos/talos.yaml"}) {
		t.Errorf("Job args %v", c.Args)
	}
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %s", job.Spec.Template.Spec.RestartPolicy)
	}
	d := deploymentNamed(t, r, "talos")
	if n := len(d.Spec.Template.Spec.InitContainers); n != 0 {
		t.Errorf("job mode and %d init containers", n)
	}
}

// fakeCluster answers the chart's lookups from a fake dynamic client holding
// the given objects.
type fakeCluster struct {
	client *dynamicfake.FakeDynamicClient
}

func (f fakeCluster) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	if apiVersion != "v1" || kind != "Secret" {
		return nil, false, fmt.Errorf("the chart looks up %s %s; only v1 Secret is expected", apiVersion, kind)
	}
	return f.client.Resource(corev1.SchemeGroupVersion.WithResource("secrets")), true, nil
}

// TestHelmTemplate_UpgradeKeepsSecrets: an upgrade renders against the
// cluster the install created, and must keep every generated secret and the
// webhook's CA; a new HMAC secret would make every issued key unverifiable.
func TestHelmTemplate_UpgradeKeepsSecrets(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	vals := readValues(t, "injected-redis-values.yaml")
	install := mustRender(t, ch, vals)
	var existing []runtime.Object
	for _, s := range find[*corev1.Secret](install) {
		existing = append(existing, s.DeepCopy())
	}
	if len(existing) != 2 {
		t.Fatalf("install renders Secrets %v", kinds(install))
	}
	upgrade, err := renderWith(ch, vals, fakeCluster{dynamicfake.NewSimpleDynamicClient(scheme.Scheme, existing...)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range find[*corev1.Secret](install) {
		for k, v := range s.Data {
			if got := secretValue(upgrade, s.Name, k); got != string(v) {
				t.Errorf("Secret %s key %s changed on upgrade", s.Name, k)
			}
		}
	}
	bundle := func(r *rendering) string {
		return string(find[*admissionv1.MutatingWebhookConfiguration](r)[0].Webhooks[0].ClientConfig.CABundle)
	}
	if bundle(install) != bundle(upgrade) || bundle(install) != secretValue(install, "talos-injector-tls", "ca.crt") {
		t.Error("the webhook's caBundle changed on upgrade, or is not the Secret's CA")
	}
	// A value set explicitly wins over the kept one.
	rotated := strings.Repeat("r", 40)
	again, err := renderWith(ch, with(vals, map[string]any{"secret.sidecarToken": rotated}),
		fakeCluster{dynamicfake.NewSimpleDynamicClient(scheme.Scheme, existing...)})
	if err != nil {
		t.Fatal(err)
	}
	if secretValue(again, "talos", "sidecarToken") != rotated || secretValue(again, "talos", "hmacCurrent") != secretValue(install, "talos", "hmacCurrent") {
		t.Error("secret.sidecarToken did not replace the kept token, or the HMAC secret changed with it")
	}
	// Without the cluster (helm template) every render generates anew: the
	// check above is not passing by accident.
	if secretValue(mustRender(t, ch, vals), "talos", "hmacCurrent") == secretValue(install, "talos", "hmacCurrent") {
		t.Error("two renders without a cluster generated the same HMAC secret")
	}
}

// TestHelmDecodeStrict proves the decoding the checks rest on rejects what a
// lenient one would drop.
func TestHelmDecodeStrict(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"misspelt field":    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n",
		"wrong case":        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  Selector: {a: b}\n",
		"duplicate field":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"custom kind":       "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  endpoint: []\n",
		"istio kind":        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  action: CUSTOM\n  providers: {name: talos}\n",
		"unregistered kind": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n",
	} {
		if _, err := decodeObject(name, []byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decodeObject("good", []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 2\n")); err != nil {
		t.Errorf("a correct Deployment: %v", err)
	}
}

// TestHelmTemplate_Broken breaks a rendering in each way a check guards
// against, so that no check passes by checking nothing.
func TestHelmTemplate_Broken(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	fresh := func() *rendering {
		r := mustRender(t, ch, readValues(t, "injected-redis-values.yaml"))
		r.external = ciCases[2].external
		return r
	}
	cpPod := func(r *rendering) *corev1.PodSpec { return &deploymentNamed(t, r, "talos").Spec.Template.Spec }
	cases := []struct {
		name   string
		check  func(*rendering) []error
		mutate func(r *rendering)
	}{
		{"writable root FS", checkSecurityContexts, func(r *rendering) {
			f := false
			cpPod(r).Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		}},
		{"capabilities kept", checkSecurityContexts, func(r *rendering) {
			cpPod(r).InitContainers[0].SecurityContext.Capabilities.Drop = nil
		}},
		{"root user", checkSecurityContexts, func(r *rendering) {
			zero := int64(0)
			cpPod(r).Containers[0].SecurityContext.RunAsUser = &zero
		}},
		{"probe on an undeclared port", checkProbes, func(r *rendering) {
			cpPod(r).Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("admin")
		}},
		{"service selects nothing", checkSelectors, func(r *rendering) {
			for _, s := range find[*corev1.Service](r) {
				s.Spec.Selector[componentKey] = "nothing"
			}
		}},
		{"service targets a missing port", checkSelectors, func(r *rendering) {
			for _, s := range find[*corev1.Service](r) {
				s.Spec.Ports[0].TargetPort = intstr.FromString("nope")
			}
		}},
		{"secret in a ConfigMap", checkNoSecretInConfigMaps, func(r *rendering) {
			for _, cm := range find[*corev1.ConfigMap](r) {
				if cm.Name == "talos" {
					cm.Data["talos.yaml"] += "\n# " + secretValue(r, "talos", "hmacCurrent") + "\n"
				}
			}
		}},
		{"DSN in a ConfigMap", checkNoSecretInConfigMaps, func(r *rendering) {
			for _, cm := range find[*corev1.ConfigMap](r) {
				if cm.Name == "talos" {
					cm.Data["talos.yaml"] = "db:\n  dsn: mysql://talos:change-me@mysql.db.svc:3306/talos\n"
				}
			}
		}},
		{"secret as a plain env value", checkSecretRefs, func(r *rendering) {
			env := cpPod(r).Containers[0].Env
			env[0].ValueFrom, env[0].Value = nil, "mysql://talos:change-me@mysql.db.svc:3306/talos"
		}},
		{"grace period too short", checkGracePeriod, func(r *rendering) {
			s := int64(10)
			cpPod(r).TerminationGracePeriodSeconds = &s
		}},
		{"config that does not load", checkConfigsLoad, func(r *rendering) {
			for _, cm := range find[*corev1.ConfigMap](r) {
				if cm.Name == "talos" {
					cm.Data["talos.yaml"] = "serve:\n  http:\n    prot: 1\n"
				}
			}
		}},
		{"caBundle of another CA", checkWebhook, func(r *rendering) {
			for _, s := range find[*corev1.Secret](r) {
				if s.Name == "talos-injector-tls" {
					s.Data["tls.crt"] = []byte(selfSigned(t))
				}
			}
		}},
		{"webhook injects kube-system", checkWebhook, func(r *rendering) {
			for _, m := range find[*admissionv1.MutatingWebhookConfiguration](r) {
				m.Webhooks[0].NamespaceSelector.MatchExpressions = m.Webhooks[0].NamespaceSelector.MatchExpressions[:1]
			}
		}},
		{"webhook fails open by default", checkWebhook, func(r *rendering) {
			for _, m := range find[*admissionv1.MutatingWebhookConfiguration](r) {
				ignore := admissionv1.Ignore
				m.Webhooks[1].FailurePolicy = &ignore
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := fresh()
			if errs := c.check(r); len(errs) != 0 {
				t.Fatalf("the unbroken rendering fails: %v", errs)
			}
			c.mutate(r)
			if errs := c.check(r); len(errs) == 0 {
				t.Error("the check passed the broken rendering")
			}
		})
	}
}

// ---- the checks ----

func checkSecurityContexts(r *rendering) []error {
	var errs []error
	for _, p := range pods(r) {
		ps := p.spec.Spec.SecurityContext
		if p.spec.Spec.AutomountServiceAccountToken == nil || *p.spec.Spec.AutomountServiceAccountToken {
			errs = append(errs, fmt.Errorf("%s mounts a service account token it does not need", p.owner))
		}
		if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			errs = append(errs, fmt.Errorf("%s: pod seccompProfile is not RuntimeDefault", p.owner))
		}
		for _, c := range allContainers(&p.spec.Spec) {
			where := p.owner + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil {
				errs = append(errs, fmt.Errorf("%s: no securityContext", where))
				continue
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil && ps != nil {
				nonRoot = ps.RunAsNonRoot
			}
			uid := sc.RunAsUser
			if uid == nil && ps != nil {
				uid = ps.RunAsUser
			}
			switch {
			case nonRoot == nil || !*nonRoot:
				errs = append(errs, fmt.Errorf("%s: runAsNonRoot is not true", where))
			case uid == nil || *uid != 65532:
				errs = append(errs, fmt.Errorf("%s: runAsUser %v, want 65532 (the image's user)", where, uid))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				errs = append(errs, fmt.Errorf("%s: root filesystem is writable", where))
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				errs = append(errs, fmt.Errorf("%s: allowPrivilegeEscalation is not false", where))
			}
			if sc.Privileged != nil && *sc.Privileged {
				errs = append(errs, fmt.Errorf("%s: privileged", where))
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				errs = append(errs, fmt.Errorf("%s: capabilities are not drop [ALL]", where))
			}
		}
	}
	return errs
}

func portIn(c *corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

func checkProbes(r *rendering) []error {
	var errs []error
	for _, p := range pods(r) {
		for _, c := range p.spec.Spec.Containers {
			if strings.HasPrefix(p.owner, "Job/") {
				continue
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				errs = append(errs, fmt.Errorf("%s %s: readiness and liveness probes are required", p.owner, c.Name))
				continue
			}
			type want struct {
				path  string
				probe *corev1.Probe
			}
			wants := []want{{"/health/ready", c.ReadinessProbe}, {"/health/alive", c.LivenessProbe}}
			if c.StartupProbe != nil {
				wants = append(wants, want{"/health/alive", c.StartupProbe})
			}
			for _, w := range wants {
				path, pr := w.path, w.probe
				g := pr.HTTPGet
				if g == nil || g.Path != path {
					errs = append(errs, fmt.Errorf("%s %s: probe %+v, want GET %s", p.owner, c.Name, pr.ProbeHandler, path))
					continue
				}
				if !portIn(&c, g.Port) {
					errs = append(errs, fmt.Errorf("%s %s: probe %s on port %s, which the container does not declare", p.owner, c.Name, g.Path, g.Port.String()))
				}
			}
		}
	}
	return errs
}

// podsSelected returns the long-running workloads whose pods sel matches
// (everything is rendered into the release namespace).
func podsSelected(r *rendering, sel labels.Selector) []pod {
	var out []pod
	for _, p := range pods(r) {
		if !strings.HasPrefix(p.owner, "Job/") && sel.Matches(labels.Set(p.spec.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

func checkSelectors(r *rendering) []error {
	var errs []error
	for _, p := range pods(r) {
		if p.selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.selector)
		if err != nil || !sel.Matches(labels.Set(p.spec.Labels)) {
			errs = append(errs, fmt.Errorf("%s: selector %v does not match its own pods' labels", p.owner, p.selector))
		}
	}
	for _, s := range find[*corev1.Service](r) {
		matched := podsSelected(r, labels.SelectorFromSet(s.Spec.Selector))
		if len(matched) != 1 {
			errs = append(errs, fmt.Errorf("Service %s selects %d workloads, want 1", s.Name, len(matched)))
			continue
		}
		for _, sp := range s.Spec.Ports {
			found := false
			for _, c := range matched[0].spec.Spec.Containers {
				found = found || portIn(&c, sp.TargetPort)
			}
			if !found {
				errs = append(errs, fmt.Errorf("Service %s port %s targets %s, which %s does not declare", s.Name, sp.Name, sp.TargetPort.String(), matched[0].owner))
			}
		}
	}
	for _, pdb := range find[*policyv1.PodDisruptionBudget](r) {
		sel, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if len(podsSelected(r, sel)) != 1 {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s does not select exactly one workload", pdb.Name))
		}
	}
	for _, h := range find[*autoscalingv2.HorizontalPodAutoscaler](r) {
		ref := h.Spec.ScaleTargetRef
		found := false
		for _, d := range find[*appsv1.Deployment](r) {
			found = found || (ref.Kind == "Deployment" && ref.Name == d.Name && ref.APIVersion == "apps/v1")
		}
		if !found {
			errs = append(errs, fmt.Errorf("HPA %s scales %v, which is not rendered", h.Name, ref))
		}
	}
	for _, sm := range findCustom[serviceMonitor](r) {
		sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
		var svcs []*corev1.Service
		for _, s := range find[*corev1.Service](r) {
			if sel.Matches(labels.Set(s.Labels)) {
				svcs = append(svcs, s)
			}
		}
		if len(svcs) != 1 {
			errs = append(errs, fmt.Errorf("ServiceMonitor %s selects %d Services, want 1", sm.Metadata.Name, len(svcs)))
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svcs[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) || ep.Path != "/metrics" {
				errs = append(errs, fmt.Errorf("ServiceMonitor %s scrapes %s%s, not a metrics port of %s", sm.Metadata.Name, ep.Port, ep.Path, svcs[0].Name))
			}
		}
	}
	return errs
}

// secretValues are every secret the rendering carries or refers to.
func secretValues(r *rendering) []string {
	var out []string
	for _, s := range find[*corev1.Secret](r) {
		for k, v := range s.Data {
			if k == "ca.crt" || k == "tls.crt" {
				continue // certificates are public
			}
			out = append(out, string(v))
		}
	}
	for _, keys := range r.external {
		out = slices.AppendSeq(out, maps.Values(keys))
	}
	if dsn, ok := dig(r.vals, "controlPlane", "db", "dsn").(string); ok && dsn != "" {
		out = append(out, dsn, dsnPassword(dsn))
	}
	return slices.DeleteFunc(out, func(s string) bool { return len(s) < 6 })
}

func dsnPassword(dsn string) string {
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return ""
	}
	userinfo, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	_, pw, _ := strings.Cut(userinfo, ":")
	return pw
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func checkNoSecretInConfigMaps(r *rendering) []error {
	var errs []error
	secrets := secretValues(r)
	if len(secrets) == 0 {
		return []error{errors.New("no secret to look for")}
	}
	texts := map[string]string{}
	for _, cm := range find[*corev1.ConfigMap](r) {
		for k, v := range cm.Data {
			texts["ConfigMap "+cm.Name+" "+k] = v
		}
	}
	for _, p := range pods(r) {
		for _, c := range allContainers(&p.spec.Spec) {
			texts[p.owner+" "+c.Name+" args"] = strings.Join(c.Args, " ")
			for _, e := range c.Env {
				texts[p.owner+" "+c.Name+" env "+e.Name] = e.Value
			}
		}
		texts[p.owner+" annotations"] = fmt.Sprint(p.spec.Annotations)
	}
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				errs = append(errs, fmt.Errorf("%s holds a secret value", where))
			}
		}
	}
	return errs
}

// Variables that are secrets by their config key.
var secretEnv = []string{"TALOS_DB_DSN", "TALOS_SECRETS_HMAC_CURRENT", "TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS",
	"TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS", "TALOS_PROXY_UPSTREAM_TOKEN", "TALOS_PROXY_CACHE_REDIS_SECRET",
	"TALOS_PROXY_CACHE_REDIS_PASSWORD"}

func checkSecretRefs(r *rendering) []error {
	var errs []error
	for _, p := range pods(r) {
		for _, c := range allContainers(&p.spec.Spec) {
			for _, e := range c.Env {
				if slices.Contains(secretEnv, e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					errs = append(errs, fmt.Errorf("%s %s: %s is not from a Secret", p.owner, c.Name, e.Name))
				}
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
					if _, err := resolveEnv(r, e); err != nil {
						errs = append(errs, fmt.Errorf("%s %s: %w", p.owner, c.Name, err))
					}
				}
			}
		}
	}
	return errs
}

func resolveEnv(r *rendering, e corev1.EnvVar) (string, error) {
	if e.ValueFrom == nil {
		return e.Value, nil
	}
	ref := e.ValueFrom.SecretKeyRef
	if ref == nil {
		return "", fmt.Errorf("%s: only secretKeyRef is expected", e.Name)
	}
	for _, s := range find[*corev1.Secret](r) {
		if s.Name == ref.Name {
			v, ok := s.Data[ref.Key]
			if !ok {
				return "", fmt.Errorf("%s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			return string(v), nil
		}
	}
	if v, ok := r.external[ref.Name][ref.Key]; ok {
		return v, nil
	}
	return "", fmt.Errorf("%s: Secret %s key %s is neither rendered nor an expected existing Secret", e.Name, ref.Name, ref.Key)
}

func shutdownSeconds(vals map[string]any, component string, def [2]int) int {
	get := func(k string, d int) int {
		switch v := dig(vals, component, "shutdown", k).(type) {
		case float64:
			return int(v)
		case int:
			return v
		}
		return d
	}
	return get("drainDelaySeconds", def[0]) + get("timeoutSeconds", def[1])
}

func checkGracePeriod(r *rendering) []error {
	var errs []error
	want := map[string]int{
		"Deployment/talos":       shutdownSeconds(r.vals, "controlPlane", [2]int{5, 30}) + 5,
		"Deployment/talos-proxy": shutdownSeconds(r.vals, "sidecar", [2]int{5, 10}) + 5,
		"DaemonSet/talos-proxy":  shutdownSeconds(r.vals, "sidecar", [2]int{5, 10}) + 5,
	}
	for _, p := range pods(r) {
		w, ok := want[p.owner]
		if !ok {
			continue
		}
		g := p.spec.Spec.TerminationGracePeriodSeconds
		if g == nil || *g < int64(w) {
			errs = append(errs, fmt.Errorf("%s: terminationGracePeriodSeconds %v, want >= %d (drain delay + timeout + 5 s)", p.owner, g, w))
		}
		for _, c := range p.spec.Spec.Containers {
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				errs = append(errs, fmt.Errorf("%s: a preStop hook; readiness already fails at SIGTERM", p.owner))
			}
		}
	}
	return errs
}

// configMapFile writes the key of a rendered ConfigMap to a temp file.
func configMapFile(r *rendering, dir, name, key string) (string, error) {
	for _, cm := range find[*corev1.ConfigMap](r) {
		if cm.Name == name {
			data, ok := cm.Data[key]
			if !ok {
				return "", fmt.Errorf("ConfigMap %s has no %s", name, key)
			}
			path := filepath.Join(dir, name+"-"+key)
			return path, os.WriteFile(path, []byte(data), 0o600)
		}
	}
	return "", fmt.Errorf("no ConfigMap %s", name)
}

// containerConfig turns a container's args and env into what
// `talos serve|proxy|migrate` would load: its --config files (from the
// mounted ConfigMaps) and TALOS_* environment.
func containerConfig(r *rendering, dir string, spec *corev1.PodSpec, c *corev1.Container) (files, env []string, err error) {
	for i, a := range c.Args {
		if a != "--config" || i+1 >= len(c.Args) {
			continue
		}
		path := c.Args[i+1]
		var mount *corev1.VolumeMount
		for j := range c.VolumeMounts {
			if m := &c.VolumeMounts[j]; m.MountPath == path || strings.HasPrefix(path, m.MountPath+"/") {
				mount = m
			}
		}
		if mount == nil {
			return nil, nil, fmt.Errorf("%s: --config %s is on no volume", c.Name, path)
		}
		key := mount.SubPath
		if key == "" {
			key = strings.TrimPrefix(path, mount.MountPath+"/")
		}
		var cm string
		for _, v := range spec.Volumes {
			if v.Name == mount.Name && v.ConfigMap != nil {
				cm = v.ConfigMap.Name
			}
		}
		f, err := configMapFile(r, dir, cm, key)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		files = append(files, f)
	}
	for _, e := range c.Env {
		v, err := resolveEnv(r, e)
		if err != nil {
			return nil, nil, err
		}
		env = append(env, e.Name+"="+v)
	}
	return files, env, nil
}

func checkConfigsLoad(r *rendering) []error {
	var errs []error
	dir, err := os.MkdirTemp("", "talos-helm-")
	if err != nil {
		return []error{err}
	}
	defer os.RemoveAll(dir)
	loaded := 0
	for _, p := range pods(r) {
		for _, c := range allContainers(&p.spec.Spec) {
			if len(c.Args) == 0 {
				continue
			}
			files, env, err := containerConfig(r, dir, &p.spec.Spec, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.owner, err))
				continue
			}
			var cfg config.Config
			switch c.Args[0] {
			case "serve", "migrate":
				cfg, err = config.Load(files, env)
				if err == nil {
					err = cfg.RequireDSN()
				}
			case "proxy":
				cfg, err = config.LoadProxy(files, env)
				if err == nil && !loopbackFree(cfg) {
					err = errors.New("a shared proxy listens on loopback only; other pods cannot reach it")
				}
			case "inject":
				cfg, err = loadInjected(r)
			default:
				err = fmt.Errorf("unknown command %v", c.Args)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", p.owner, c.Name, err))
				continue
			}
			if w := cfg.Warnings; len(w) != 0 {
				errs = append(errs, fmt.Errorf("%s %s: warnings %q", p.owner, c.Name, w))
			}
			loaded++
		}
	}
	if loaded == 0 {
		errs = append(errs, errors.New("no container config was loaded"))
	}
	return errs
}

func loopbackFree(cfg config.Config) bool {
	p := cfg.Proxy
	return p.ExtAuthz.Host == "0.0.0.0" && p.HTTP.Host == "0.0.0.0" && p.Metrics.Host == "0.0.0.0"
}

// injectorConfigOf parses the injector's config file as talos inject serve
// does (strictly).
func injectorConfigOf(r *rendering) (inject.Config, error) {
	for _, cm := range find[*corev1.ConfigMap](r) {
		if data, ok := cm.Data["injector.yaml"]; ok {
			c, err := inject.ParseConfig([]byte(data))
			if err != nil {
				return inject.Config{}, fmt.Errorf("ConfigMap %s injector.yaml: %w", cm.Name, err)
			}
			return c, nil
		}
	}
	return inject.Config{}, errors.New("no injector.yaml")
}

// loadInjected loads the config an injected sidecar gets: the rendered
// injector config, through the real injector, on a plain pod; the sidecar's
// env (secrets resolved from the rendering) loaded as talos proxy would.
func loadInjected(r *rendering) (config.Config, error) {
	ic, err := injectorConfigOf(r)
	if err != nil {
		return config.Config{}, err
	}
	if ic.ConfigMap != "" {
		return config.Config{}, fmt.Errorf("injector configMap %q: lives in the pods' namespaces, not rendered here", ic.ConfigMap)
	}
	in, err := inject.New(ic, "test")
	if err != nil {
		return config.Config{}, err
	}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "apps"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	outcome, m, reason, err := in.Plan(pod.ObjectMeta, pod.Spec)
	if err != nil || outcome != inject.Injected {
		return config.Config{}, fmt.Errorf("a plain pod is not injected (%s): %v", reason, err)
	}
	m.Apply(&pod.ObjectMeta, &pod.Spec)
	i := slices.IndexFunc(append(pod.Spec.InitContainers, pod.Spec.Containers...), func(c corev1.Container) bool { return c.Name == "talos-proxy" })
	if i < 0 {
		return config.Config{}, errors.New("injected pod has no talos-proxy container")
	}
	c := append(pod.Spec.InitContainers, pod.Spec.Containers...)[i]
	if !slices.Equal(c.Args, []string{"proxy"}) {
		return config.Config{}, fmt.Errorf("injected sidecar args %q", c.Args)
	}
	var env []string
	for _, e := range c.Env {
		v, err := resolveEnv(r, e)
		if err != nil {
			return config.Config{}, err
		}
		env = append(env, e.Name+"="+v)
	}
	return config.LoadProxy(nil, env)
}

func weight(o *object) string {
	var m struct {
		Metadata objectMeta `yaml:"metadata"`
	}
	_ = yaml.Unmarshal(o.raw, &m)
	return m.Metadata.Annotations[hookWeight]
}

func checkHooks(r *rendering) []error {
	var errs []error
	var jobs, hooks []*object
	for _, o := range r.objs {
		if o.hook != "" {
			hooks = append(hooks, o)
			if o.kind == "Job" {
				jobs = append(jobs, o)
			}
		}
	}
	for _, j := range jobs {
		job := j.typed.(*batchv1.Job)
		jw := weight(j)
		// Everything the Job refers to must be a hook that runs before it.
		refs := map[string]bool{}
		for _, v := range job.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil {
				refs["ConfigMap/"+v.ConfigMap.Name] = true
			}
		}
		for _, c := range job.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs["Secret/"+e.ValueFrom.SecretKeyRef.Name] = true
				}
			}
		}
		for ref := range refs {
			if _, ext := r.external[strings.TrimPrefix(ref, "Secret/")]; ext {
				continue
			}
			i := slices.IndexFunc(hooks, func(o *object) bool { return o.kind+"/"+o.name == ref })
			switch {
			case i < 0:
				errs = append(errs, fmt.Errorf("Job %s uses %s, which is not a hook: it does not exist yet at pre-install", job.Name, ref))
			case hooks[i].hook != j.hook:
				errs = append(errs, fmt.Errorf("%s is a %s hook, the Job a %s one", ref, hooks[i].hook, j.hook))
			case atoi(weight(hooks[i])) >= atoi(jw):
				errs = append(errs, fmt.Errorf("%s (weight %s) is not created before the Job (weight %s)", ref, weight(hooks[i]), jw))
			}
		}
	}
	return errs
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func checkWebhook(r *rendering) []error {
	var errs []error
	mwcs := find[*admissionv1.MutatingWebhookConfiguration](r)
	injected := dig(r.vals, "sidecar", "mode") == "injected"
	if !injected {
		if len(mwcs) != 0 {
			return []error{errors.New("a webhook without sidecar.mode=injected")}
		}
		return nil
	}
	if len(mwcs) != 1 {
		return []error{fmt.Errorf("%d MutatingWebhookConfigurations, want 1", len(mwcs))}
	}
	m := mwcs[0]
	ic, err := injectorConfigOf(r)
	if err != nil {
		return []error{err}
	}
	if ic.Image == "" || ic.Upstream == "" || ic.TokenSecret == nil || ic.TokenSecret.Name == "" || ic.TokenSecret.Key == "" {
		errs = append(errs, fmt.Errorf("injector config lacks a required field: %+v", ic))
	}
	wantPolicy := admissionv1.Fail
	if fp, ok := dig(r.vals, "injector", "failurePolicy").(string); ok {
		wantPolicy = admissionv1.FailurePolicyType(fp)
	}
	certManager := dig(r.vals, "injector", "certManager", "enabled") == true
	for _, w := range m.Webhooks {
		if w.FailurePolicy == nil || *w.FailurePolicy != wantPolicy {
			errs = append(errs, fmt.Errorf("webhook %s: failurePolicy %v, want %s", w.Name, w.FailurePolicy, wantPolicy))
		}
		if *w.SideEffects != admissionv1.SideEffectClassNone || !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) ||
			w.TimeoutSeconds == nil || *w.TimeoutSeconds != 5 || w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionv1.IfNeededReinvocationPolicy {
			errs = append(errs, fmt.Errorf("webhook %s: sideEffects/admissionReviewVersions/timeoutSeconds/reinvocationPolicy", w.Name))
		}
		svc := w.ClientConfig.Service
		if svc == nil || svc.Path == nil || *svc.Path != "/inject" || *svc.Port != 443 || svc.Namespace != releaseNS {
			errs = append(errs, fmt.Errorf("webhook %s: clientConfig %+v", w.Name, w.ClientConfig))
			continue
		}
		if !slices.ContainsFunc(find[*corev1.Service](r), func(s *corev1.Service) bool {
			return s.Name == svc.Name && len(s.Spec.Ports) == 1 && s.Spec.Ports[0].Port == 443
		}) {
			errs = append(errs, fmt.Errorf("webhook %s: no Service %s on 443", w.Name, svc.Name))
		}
		nsSel, err1 := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		podSel, err2 := metav1.LabelSelectorAsSelector(w.ObjectSelector)
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ns := range []string{"kube-system", releaseNS} {
			if nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": ns, "talos.dev/inject": "enabled"}) ||
				nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": ns}) {
				errs = append(errs, fmt.Errorf("webhook %s may inject namespace %s", w.Name, ns))
			}
		}
		if podSel.Matches(labels.Set{"talos.dev/inject": "false"}) {
			errs = append(errs, fmt.Errorf("webhook %s injects a pod labelled talos.dev/inject=false", w.Name))
		}
		if certManager {
			if len(w.ClientConfig.CABundle) != 0 || m.Annotations["cert-manager.io/inject-ca-from"] != releaseNS+"/"+svc.Name {
				errs = append(errs, fmt.Errorf("webhook %s: with cert-manager the caBundle comes from inject-ca-from", w.Name))
			}
			continue
		}
		if err := verifyServing(r, w.ClientConfig.CABundle, svc.Name+"."+svc.Namespace+".svc", svc.Name+"-tls"); err != nil {
			errs = append(errs, fmt.Errorf("webhook %s: %w", w.Name, err))
		}
	}
	// Who gets injected: the two entries together.
	type sel struct{ ns, pod labels.Set }
	admitted := func(s sel) bool {
		for _, w := range m.Webhooks {
			n, _ := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
			p, _ := metav1.LabelSelectorAsSelector(w.ObjectSelector)
			if n.Matches(s.ns) && p.Matches(s.pod) {
				return true
			}
		}
		return false
	}
	app := func(l labels.Set) labels.Set { l["kubernetes.io/metadata.name"] = "orders"; return l }
	for _, c := range []struct {
		s    sel
		want bool
	}{
		{sel{app(labels.Set{"talos.dev/inject": "enabled"}), labels.Set{}}, true},
		{sel{app(labels.Set{"talos.dev/inject": "enabled"}), labels.Set{"talos.dev/inject": "false"}}, false},
		{sel{app(labels.Set{}), labels.Set{}}, false},
		{sel{app(labels.Set{}), labels.Set{"talos.dev/inject": "true"}}, true},
		{sel{app(labels.Set{"talos.dev/inject": "disabled"}), labels.Set{"talos.dev/inject": "true"}}, false},
	} {
		if got := admitted(c.s); got != c.want {
			errs = append(errs, fmt.Errorf("namespace %v pod %v: injected %v, want %v", c.s.ns, c.s.pod, got, c.want))
		}
	}
	return errs
}

// verifyServing checks that the webhook's Secret holds a certificate for
// name that the caBundle verifies, with its private key.
func verifyServing(r *rendering, caBundle []byte, name, secret string) error {
	var s *corev1.Secret
	for _, x := range find[*corev1.Secret](r) {
		if x.Name == secret {
			s = x
		}
	}
	if s == nil || s.Type != corev1.SecretTypeTLS {
		return fmt.Errorf("no kubernetes.io/tls Secret %s", secret)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return errors.New("caBundle holds no PEM certificate")
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		return errors.New("tls.crt holds no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
		return fmt.Errorf("the serving certificate does not verify for %s against the caBundle: %w", name, err)
	}
	if !bytes.Contains(s.Data["tls.key"], []byte("PRIVATE KEY")) {
		return errors.New("tls.key holds no private key")
	}
	return nil
}

func checkIstio(r *rendering) []error {
	var errs []error
	ops := findCustom[istioOperator](r) // never a document of its own
	if len(ops) != 0 {
		errs = append(errs, errors.New("an IstioOperator rendered as an object; it belongs in the ConfigMap"))
	}
	aps := findCustom[authorizationPolicy](r)
	if dig(r.vals, "istio", "enabled") != true {
		if len(aps) != 0 {
			errs = append(errs, errors.New("an AuthorizationPolicy without istio.enabled"))
		}
		return errs
	}
	var op istioOperator
	for _, cm := range find[*corev1.ConfigMap](r) {
		if data, ok := cm.Data["mesh-config.yaml"]; ok {
			if err := decodeStrict([]byte(data), &op); err != nil {
				return append(errs, fmt.Errorf("ConfigMap %s mesh-config.yaml: %w", cm.Name, err))
			}
		}
	}
	providers := op.Spec.MeshConfig.ExtensionProviders
	if len(providers) != 1 {
		return append(errs, fmt.Errorf("mesh-config.yaml has %d providers, want 1", len(providers)))
	}
	p := providers[0]
	for _, problem := range providerProblems(p.Name, p.EnvoyExtAuthzGrpc) {
		errs = append(errs, errors.New(problem))
	}
	if len(aps) != 1 {
		return append(errs, fmt.Errorf("%d AuthorizationPolicies, want 1", len(aps)))
	}
	ap := aps[0]
	if ap.Spec.Action != "CUSTOM" || ap.Spec.Provider.Name != p.Name {
		errs = append(errs, fmt.Errorf("AuthorizationPolicy: action %s provider %s, want CUSTOM %s", ap.Spec.Action, ap.Spec.Provider.Name, p.Name))
	}
	if len(ap.Spec.Rules) == 0 {
		errs = append(errs, errors.New("AuthorizationPolicy without rules checks nothing"))
	}
	if p.EnvoyExtAuthzGrpc == nil {
		return errs
	}
	service := p.EnvoyExtAuthzGrpc.Service
	if dig(r.vals, "sidecar", "mode") == "injected" {
		ses := findCustom[serviceEntry](r)
		if service != "talos-proxy.local" || len(ses) == 0 || !slices.Contains(ses[0].Spec.Hosts, service) {
			errs = append(errs, fmt.Errorf("injected sidecars: provider service %s, ServiceEntries %d", service, len(ses)))
		}
		return errs
	}
	found := false
	for _, s := range find[*corev1.Service](r) {
		if s.Name+"."+s.Namespace+".svc.cluster.local" == service {
			found = slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
				return int(sp.Port) == p.EnvoyExtAuthzGrpc.Port && sp.TargetPort.StrVal == "talos-authz"
			})
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("provider %s:%d is not the sidecar Service's ext_authz port", service, p.EnvoyExtAuthzGrpc.Port))
	}
	return errs
}

func checkNames(r *rendering) []error {
	var errs []error
	seen := map[string]bool{}
	for _, o := range r.objs {
		key := o.kind + "/" + o.ns + "/" + o.name
		if seen[key] {
			errs = append(errs, fmt.Errorf("%s rendered twice", key))
		}
		seen[key] = true
		clusterScoped := o.kind == "MutatingWebhookConfiguration"
		if clusterScoped != (o.ns == "") {
			errs = append(errs, fmt.Errorf("%s %s: namespace %q", o.kind, o.name, o.ns))
		}
		if len(o.name) > 63 || o.name == "" {
			errs = append(errs, fmt.Errorf("%s: bad name %q", o.kind, o.name))
		}
	}
	if !strings.Contains(r.notes, "Talos") {
		errs = append(errs, errors.New("NOTES.txt did not render"))
	}
	return errs
}

// selfSigned returns a PEM certificate of a CA the chart never saw.
func selfSigned(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "talos-injector.talos.svc"},
		DNSNames: []string{"talos-injector.talos.svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
