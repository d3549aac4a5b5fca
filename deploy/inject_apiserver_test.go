package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/talos-project/talos/deploy/inject"
	"github.com/talos-project/talos/pkg/tlsconf"
	"github.com/talos-project/talos/pkg/tlsconf/tlstest"
)

// injectedValues is the ci/ values file whose injector and webhook the test
// runs: its injector.yaml configures the injector, its
// MutatingWebhookConfiguration (selectors, policies) is created on the API
// server with only the clientConfig pointed at the test's injector.
const injectedValues = "injected-redis-values.yaml"

// TestInjectorAPIServer has a real kube-apiserver call the real injector
// (deploy/inject.NewServer over HTTPS, as `talos inject serve` runs it)
// through the chart's own webhook configuration: which pods the API server
// sends (namespace and object selectors, pods only, the release namespace
// left out), what it stores (the JSONPatch applied by the API server,
// decoded back), refusals shown to the client, and failurePolicy Fail
// once the injector is gone. Opt-in like TestHelmServerDryRun.
func TestInjectorAPIServer(t *testing.T) {
	dir := kubeBinDir(t)
	start := time.Now()
	r, err := renderChart(loadChart(t), readValues(t, injectedValues))
	if err != nil {
		t.Fatal(err)
	}
	ic, err := injectorConfigOf(r)
	if err != nil {
		t.Fatal(err)
	}
	in, err := inject.New(ic, "v0.0.0-apiserver-test")
	if err != nil {
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t, "injector apiserver test CA")
	// The handler logs every review it gets (Debug included): the test
	// tells from it which objects the API server sent.
	var reviews lockedBuffer
	injURL, stopInjector := startInjector(t, in, ca, slog.New(slog.NewTextHandler(&reviews, &slog.HandlerOptions{Level: slog.LevelDebug})))

	cfg := startAPIServer(t, dir)
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	t.Logf("etcd and kube-apiserver ready in %v", time.Since(start).Round(time.Millisecond))

	const labelled, plain = "orders", "plain"
	for ns, l := range map[string]map[string]string{
		labelled:  {inject.AnnotationInject: "enabled"},
		plain:     nil,
		releaseNS: {inject.AnnotationInject: "enabled"}, // labelled, yet excluded by the chart
	} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: l}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The ServiceAccount admission plugin waits for the account that
		// the (not running) service account controller would create.
		if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	mwcs := find[*admissionv1.MutatingWebhookConfiguration](r)
	if len(mwcs) != 1 || len(mwcs[0].Webhooks) != 2 {
		t.Fatalf("%s renders %d MutatingWebhookConfigurations, want 1 with 2 webhooks", injectedValues, len(mwcs))
	}
	mwc := mwcs[0].DeepCopy()
	for i := range mwc.Webhooks {
		w := &mwc.Webhooks[i]
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionv1.Fail {
			t.Fatalf("webhook %s: failurePolicy %v, the chart's default is Fail", w.Name, w.FailurePolicy)
		}
		w.ClientConfig = admissionv1.WebhookClientConfig{URL: &injURL, CABundle: ca.PEM}
	}
	if _, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pods := kc.CoreV1().Pods
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	// The webhook is effective once the API server's informer has it: a
	// dry-run create in the labelled namespace comes back injected.
	webhookStart := time.Now()
	deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		got, err := pods(labelled).Create(deadline, appPod("probe", nil, nil), dryRun)
		if err == nil && sidecarCount(got) == 1 {
			break
		}
		if deadline.Err() != nil {
			t.Fatalf("the webhook is not effective after 30s (last: %v)", last)
		}
		last = err
		if err == nil {
			last = errors.New("the pod came back without its sidecar")
		}
		select {
		case <-deadline.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("webhook effective in %v", time.Since(webhookStart).Round(time.Millisecond))

	casesStart := time.Now()
	// Injected, stored for real: the pod the API server keeps is the pod
	// with the mutation the injector plans for it (plus the API server's
	// defaults and its service-account token mount).
	want := appPod("injected", nil, nil)
	stored, err := pods(labelled).Create(ctx, want.DeepCopy(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored, err = pods(labelled).Get(ctx, stored.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(t, in, want, stored)

	// The injected pod sent again (as by a re-created object): not
	// injected twice.
	again := stored.DeepCopy()
	again.ObjectMeta = metav1.ObjectMeta{Name: "injected-again", Labels: stored.Labels, Annotations: stored.Annotations}
	got, err := pods(labelled).Create(ctx, again, dryRun)
	if err != nil {
		t.Fatalf("the injected pod sent again: %v", err)
	}
	if n := sidecarCount(got); n != 1 || len(got.Spec.InitContainers) != len(stored.Spec.InitContainers) || len(got.Spec.Volumes) != len(stored.Spec.Volumes) {
		t.Errorf("the injected pod sent again: %d %s containers, %d init containers, %d volumes; want 1, %d, %d",
			n, inject.ContainerName, len(got.Spec.InitContainers), len(got.Spec.Volumes), len(stored.Spec.InitContainers), len(stored.Spec.Volumes))
	}

	for _, c := range []struct {
		name, ns string
		labels   map[string]string
		injected bool
	}{
		{"opted-out", labelled, map[string]string{inject.AnnotationInject: "false"}, false},
		{"opted-in", plain, map[string]string{inject.AnnotationInject: "true"}, true},
		{"unlabelled", plain, nil, false},
		{"release-namespace", releaseNS, nil, false},
		{"release-namespace-opted-in", releaseNS, map[string]string{inject.AnnotationInject: "true"}, false},
	} {
		p := appPod(c.name, c.labels, nil)
		got, err := pods(c.ns).Create(ctx, p.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			t.Errorf("%s (namespace %s): %v", c.name, c.ns, err)
			continue
		}
		if c.injected {
			checkInjected(t, in, p, got)
		} else if n := sidecarCount(got); n != 0 || got.Annotations[inject.AnnotationStatus] != "" {
			t.Errorf("%s (namespace %s): injected (%d sidecars, annotations %v), want not", c.name, c.ns, n, got.Annotations)
		}
	}

	// A refusal reaches whoever creates the pod, with the injector's
	// message.
	bad := appPod("bad-resources", nil, map[string]string{inject.AnnotationCPURequest: "lots"})
	_, _, _, planErr := in.Plan(bad.ObjectMeta, bad.Spec)
	var denied *inject.DeniedError
	if !errors.As(planErr, &denied) {
		t.Fatalf("the injector plans %v for a bad resource annotation, want a refusal", planErr)
	}
	_, err = pods(labelled).Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), planErr.Error()) || !strings.Contains(err.Error(), `admission webhook "namespace.inject.talos.dev" denied the request`) {
		t.Errorf("a pod with %s=lots: %v, want the webhook's refusal %q", inject.AnnotationCPURequest, err, planErr)
	}

	// Only pods: a Deployment's template is left to its pods.
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "app"}}, Spec: appPod("", nil, nil).Spec},
		},
	}
	gotD, err := kc.AppsV1().Deployments(labelled).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := sidecarCount(&corev1.Pod{ObjectMeta: gotD.Spec.Template.ObjectMeta, Spec: gotD.Spec.Template.Spec}); n != 0 || len(gotD.Annotations)+len(gotD.Spec.Template.Annotations) != 0 {
		t.Errorf("a Deployment was mutated: %d sidecars in its template, annotations %v %v", n, gotD.Annotations, gotD.Spec.Template.Annotations)
	}
	t.Logf("admission cases in %v", time.Since(casesStart).Round(time.Millisecond))

	// The chart's selectors and rules, not only the injector's own checks
	// (which skip opted-out pods and other resources too), keep these
	// objects away from the webhook: it never saw them.
	for _, name := range []string{"injected", "injected-again", "opted-in", "bad-resources"} {
		if !reviewedPod(reviews.String(), name) {
			t.Errorf("the injector got no review of pod %s", name)
		}
	}
	for _, name := range []string{"opted-out", "unlabelled", "release-namespace", "release-namespace-opted-in"} {
		if reviewedPod(reviews.String(), name) {
			t.Errorf("the API server sent pod %s to the injector; the webhook's selectors should have left it out", name)
		}
	}
	if strings.Contains(reviews.String(), "not a pod create") {
		t.Errorf("the API server sent the injector something else than a pod create:\n%s", reviews.String())
	}

	// Fail closed: with the injector gone, no pod of a labelled namespace
	// (or opted in) is created without its sidecar; the other namespaces
	// do not depend on the injector.
	stopInjector()
	for _, c := range []struct {
		name, ns string
		labels   map[string]string
		webhook  string
	}{
		{"down-labelled", labelled, nil, "namespace.inject.talos.dev"},
		{"down-opted-in", plain, map[string]string{inject.AnnotationInject: "true"}, "object.inject.talos.dev"},
	} {
		_, err := pods(c.ns).Create(ctx, appPod(c.name, c.labels, nil), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("failed calling webhook %q", c.webhook)) {
			t.Errorf("%s with the injector down: %v, want refused (failed calling webhook %q)", c.name, err, c.webhook)
		}
	}
	for _, c := range []struct{ name, ns string }{{"down-unlabelled", plain}, {"down-release", releaseNS}} {
		got, err := pods(c.ns).Create(ctx, appPod(c.name, nil, nil), metav1.CreateOptions{})
		if err != nil || sidecarCount(got) != 0 {
			t.Errorf("%s (namespace %s) with the injector down: %v, want created as it is", c.name, c.ns, err)
		}
	}
	list, err := pods(labelled).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.Labels[inject.AnnotationInject] != "false" && sidecarCount(&p) != 1 {
			t.Errorf("pod %s/%s stored without its sidecar", p.Namespace, p.Name)
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// startInjector serves in over HTTPS on 127.0.0.1:0 with a certificate of
// ca (for 127.0.0.1: the API server calls the URL), as `talos inject
// serve` does, and returns the webhook URL and a function that stops the
// server and waits for it.
func startInjector(t *testing.T, in *inject.Injector, ca *tlstest.CA, log *slog.Logger) (string, func()) {
	t.Helper()
	cert, key := ca.Server(t).Write(t, t.TempDir(), "tls")
	srvTLS, err := tlsconf.NewServer(tlsconf.ServerOptions{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := inject.NewServer(inject.NewHandler(in, log), inject.ServerOptions{Listener: ln, TLS: srvTLS.Config("h2", "http/1.1")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("injector: %v", err)
		}
	}
	t.Cleanup(stop)
	return "https://" + srv.Addr().String() + "/inject", stop
}

// reviewedPod tells whether the injector's log has a review of the pod
// name.
func reviewedPod(log, name string) bool {
	for line := range strings.Lines(log) {
		if slices.Contains(strings.Fields(line), "pod="+name) {
			return true
		}
	}
	return false
}

// appPod is a plain application pod.
func appPod(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.com/app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		}}},
	}
}

// sidecarCount is how many talos-proxy containers the pod has.
func sidecarCount(p *corev1.Pod) int {
	n := 0
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		if c.Name == inject.ContainerName {
			n++
		}
	}
	return n
}

// checkInjected compares the pod the API server returned for sent with
// the injector's own plan for it: the native sidecar (an init container
// with restartPolicy Always, first), its environment, probes, ports,
// resources and security context, the config volume, the annotations; and
// the application container untouched.
func checkInjected(t *testing.T, in *inject.Injector, sent, got *corev1.Pod) {
	t.Helper()
	outcome, m, reason, err := in.Plan(sent.ObjectMeta, sent.Spec)
	if err != nil || outcome != inject.Injected {
		t.Fatalf("%s: the injector plans %v %q %v, want injected", sent.Name, outcome, reason, err)
	}
	if !m.Native {
		t.Fatalf("%s renders a non-native sidecar; the test expects the chart's default (native)", injectedValues)
	}
	if sidecarCount(got) != 1 || len(got.Spec.InitContainers) != 1 || len(got.Spec.Containers) != len(sent.Spec.Containers) {
		t.Fatalf("%s: init containers %d, containers %d, talos-proxy %d; want 1, %d, 1",
			got.Name, len(got.Spec.InitContainers), len(got.Spec.Containers), sidecarCount(got), len(sent.Spec.Containers))
	}
	c, w := got.Spec.InitContainers[0], m.Container
	if c.Name != inject.ContainerName || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s: init container %s restartPolicy %v, want %s Always", got.Name, c.Name, c.RestartPolicy, inject.ContainerName)
	}
	for _, f := range []struct {
		what      string
		got, want any
	}{
		{"image", c.Image, w.Image},
		{"args", c.Args, w.Args},
		{"env", c.Env, w.Env},
		{"ports", c.Ports, w.Ports},
		{"resources", c.Resources, w.Resources},
		{"startupProbe", c.StartupProbe, w.StartupProbe},
		{"readinessProbe", c.ReadinessProbe, w.ReadinessProbe},
		{"livenessProbe", c.LivenessProbe, w.LivenessProbe},
		{"securityContext", c.SecurityContext, w.SecurityContext},
		{"volumeMounts", c.VolumeMounts, w.VolumeMounts},
	} {
		if !apiequality.Semantic.DeepEqual(f.got, f.want) {
			t.Errorf("%s: stored sidecar %s %+v, the injector's %+v", got.Name, f.what, f.got, f.want)
		}
	}
	if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil || !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "TALOS_PROXY_UPSTREAM_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}) {
		t.Errorf("%s: the sidecar lacks its probes or its token from a Secret", got.Name)
	}
	for k, v := range m.Annotations {
		if got.Annotations[k] != v {
			t.Errorf("%s: annotation %s=%q, want %q", got.Name, k, got.Annotations[k], v)
		}
	}
	if got.Annotations[inject.AnnotationStatus] != inject.StatusInjected {
		t.Errorf("%s: no %s annotation", got.Name, inject.AnnotationStatus)
	}
	for _, want := range m.Volumes {
		if !slices.ContainsFunc(got.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == want.Name && apiequality.Semantic.DeepEqual(v.VolumeSource, want.VolumeSource)
		}) {
			t.Errorf("%s: volume %s missing: %+v", got.Name, want.Name, got.Spec.Volumes)
		}
	}
	// The ServiceAccount admission plugin runs again after the webhook and
	// mounts the pod's API token into every container without a mount at
	// its path: the app gets it, the sidecar (an empty volume there) not.
	app := got.Spec.Containers[0]
	if !slices.ContainsFunc(app.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == inject.ServiceAccountTokenPath }) {
		t.Errorf("%s: the app got no service-account token: the check of the sidecar's would prove nothing", got.Name)
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == inject.ServiceAccountTokenPath && vm.Name != inject.NoTokenVolumeName {
			t.Errorf("%s: the sidecar holds the pod's API token (volume %s)", got.Name, vm.Name)
		}
	}
	if app.Name != "app" || app.Image != sent.Spec.Containers[0].Image || !apiequality.Semantic.DeepEqual(app.Ports, sent.Spec.Containers[0].Ports) {
		t.Errorf("%s: the application container changed: %+v", got.Name, app)
	}
}
