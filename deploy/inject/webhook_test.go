package inject_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/talos-project/talos/deploy/inject"
)

// want is what each golden case must come to, besides its golden files.
var want = map[string]struct {
	allowed bool
	patched bool
	message string // a part of the denial message
}{
	"native/opt-in-annotation":     {allowed: true, patched: true},
	"native/no-annotations":        {allowed: true, patched: true},
	"native/opt-out-label":         {allowed: true},
	"native/opt-out-annotation":    {allowed: true},
	"native/already-injected":      {allowed: true},
	"native/name-clash":            {message: "already has a container named talos-proxy"},
	"native/bad-cpu-request":       {message: "talos.dev/proxy-cpu-request"},
	"native/request-above-limit":   {message: "talos.dev/proxy-memory-request"},
	"native/resource-annotations":  {allowed: true, patched: true},
	"native/bad-tenant":            {message: "talos.dev/tenant"},
	"native/tenant-annotation":     {allowed: true, patched: true},
	"native/bad-inject-value":      {message: "talos.dev/inject"},
	"native/port-clash":            {message: "port 9191"},
	"native/host-network":          {message: "hostNetwork"},
	"native/update-ignored":        {allowed: true},
	"native/not-a-pod":             {allowed: true},
	"native/unknown-pod-field":     {allowed: true, patched: true},
	"regular/regular-container":    {allowed: true, patched: true},
	"regular/regular-with-volumes": {allowed: true, patched: true},
	"regular/volume-clash":         {message: "volume named talos-proxy-config"},
	"native/token-volume-clash":    {message: "volume named talos-proxy-no-sa-token"},
}

// TestHandler_Golden posts every testdata/{native,regular}/*.in.json
// AdmissionReview to the handler and compares the response review with
// *.out.json (and its decoded patch with *.patch.json). A patch is then
// applied with an independent JSON-patch implementation; the patched pod
// must decode strictly, pass the pod validation injection can break, equal
// what the offline path makes of the same pod, and not be injected again.
func TestHandler_Golden(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/*/*.in.json")
	if len(files) != len(want) {
		t.Errorf("%d cases in testdata, %d in want", len(files), len(want))
	}
	injectors := map[string]*inject.Injector{}
	for _, dir := range []string{"native", "regular"} {
		injectors[dir] = mustInjector(t, filepath.Join("testdata", dir, "injector.yaml"))
	}
	for _, file := range files {
		dir := filepath.Base(filepath.Dir(file))
		name := dir + "/" + strings.TrimSuffix(filepath.Base(file), ".in.json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			h := inject.NewHandler(injectors[dir], nil)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(in))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			base := strings.TrimSuffix(file, ".in.json")
			checkGolden(t, base+".out.json", indentJSON(t, rec.Body.Bytes()))

			var reqReview, resp admissionv1.AdmissionReview
			if err := json.Unmarshal(in, &reqReview); err != nil {
				t.Fatal(err)
			}
			if _, err := inject.DecodeReview(in); err != nil {
				t.Fatalf("the input does not decode strictly: %v", err)
			}
			resp.Response = decodeResponse(t, rec.Body.Bytes())
			r := resp.Response
			if r.UID != reqReview.Request.UID {
				t.Errorf("uid %q, want %q", r.UID, reqReview.Request.UID)
			}
			if r.Allowed != w.allowed {
				t.Errorf("allowed %v, want %v (result %+v)", r.Allowed, w.allowed, r.Result)
			}
			if w.message != "" && (r.Result == nil || !strings.Contains(r.Result.Message, w.message)) {
				t.Errorf("result %+v, want a message with %q", r.Result, w.message)
			}
			if got := r.Patch != nil; got != w.patched {
				t.Fatalf("patched %v, want %v", got, w.patched)
			}
			if !w.patched {
				return
			}
			if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Errorf("patchType %v, want JSONPatch", r.PatchType)
			}
			checkGolden(t, base+".patch.json", indentJSON(t, r.Patch))
			object := reqReview.Request.Object.Raw
			patched := applyPatch(t, object, r.Patch)
			if name == "native/unknown-pod-field" {
				// A field of a newer API server is kept as it was; the
				// rest must decode strictly.
				patched, object = withoutFutureField(t, patched), withoutFutureField(t, object)
			}
			pod := strictPod(t, patched)
			if err := validatePod(pod.Spec); err != nil {
				t.Errorf("patched pod invalid: %v", err)
			}
			checkInjected(t, pod, dir == "native")

			// The offline path makes the same pod of it.
			var offline corev1.Pod
			if err := json.Unmarshal(object, &offline); err != nil {
				t.Fatal(err)
			}
			_, m, _, err := injectors[dir].Plan(offline.ObjectMeta, offline.Spec)
			if err != nil {
				t.Fatal(err)
			}
			m.Apply(&offline.ObjectMeta, &offline.Spec)
			if diff := cmp.Diff(&offline, pod); diff != "" {
				t.Errorf("offline and webhook pods differ (-offline +webhook):\n%s", diff)
			}
			// And never twice.
			if outcome, _, _, err := injectors[dir].Plan(pod.ObjectMeta, pod.Spec); err != nil || outcome != inject.Skipped {
				t.Errorf("re-injection: outcome %v, err %v; want skipped", outcome, err)
			}
		})
	}
}

func decodeResponse(t *testing.T, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	var review admissionv1.AdmissionReview
	if err := decodeStrict(body, &review); err != nil {
		t.Fatalf("response: %v", err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || review.Response == nil || review.Request != nil {
		t.Fatalf("response review %s %s, response %v, request %v", review.APIVersion, review.Kind, review.Response, review.Request)
	}
	return review.Response
}

// checkInjected checks the sidecar of an injected pod.
func checkInjected(t *testing.T, pod *corev1.Pod, native bool) {
	t.Helper()
	list := pod.Spec.Containers
	if native {
		list = pod.Spec.InitContainers
	}
	var c *corev1.Container
	for i := range list {
		if list[i].Name == inject.ContainerName {
			c = &list[i]
		}
	}
	if c == nil {
		t.Fatalf("no %s container (native %v)", inject.ContainerName, native)
	}
	if pod.Annotations[inject.AnnotationStatus] != inject.StatusInjected || pod.Annotations[inject.AnnotationVersion] != testVersion {
		t.Errorf("annotations %v", pod.Annotations)
	}
	if native != (c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways) {
		t.Errorf("restartPolicy %v, native %v", c.RestartPolicy, native)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["TALOS_PROXY_UPSTREAM"].Value != "talos-grpc.talos.svc:4421" || env["TALOS_PROXY_METRICS_HOST"].Value != "0.0.0.0" {
		t.Errorf("env %v", c.Env)
	}
	if _, ok := env["TALOS_PROXY_EXTAUTHZ_HOST"]; ok {
		t.Error("ext_authz must stay on loopback")
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || *sc.RunAsUser != 65532 {
		t.Errorf("securityContext %+v", sc)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/health/ready" || c.LivenessProbe.HTTPGet.Path != "/health/alive" {
		t.Errorf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// withoutFutureField removes spec.futureField from a pod, failing if it is
// not there.
func withoutFutureField(t *testing.T, pod []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(pod, &m); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	if _, ok := spec["futureField"]; !ok {
		t.Fatal("spec.futureField was lost")
	}
	delete(spec, "futureField")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkReview measures one review of a pod to inject, without and with
// a tenant annotation (checked with the sidecar's own config loader).
func BenchmarkReview(b *testing.B) {
	h := inject.NewHandler(mustInjector(b, "testdata/native/injector.yaml"), nil)
	for _, name := range []string{"no-annotations", "tenant-annotation"} {
		b.Run(name, func(b *testing.B) {
			body, err := os.ReadFile("testdata/native/" + name + ".in.json")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				review, err := inject.DecodeReview(body)
				if err != nil {
					b.Fatal(err)
				}
				if resp := h.Review(review.Request); resp.Patch == nil {
					b.Fatal("not patched")
				}
			}
		})
	}
}
