package inject_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/talos-project/talos/deploy/inject"
)

func podMeta(ann map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: "p", Namespace: "shop", Annotations: ann}
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}}
}

// FuzzDecodeReview feeds arbitrary bytes to the AdmissionReview decoder
// and, when they decode, to the review: nothing panics, the response keeps
// the UID, and a patch applies to the reviewed object and leaves a pod
// that validates.
func FuzzDecodeReview(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.in.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	h := inject.NewHandler(mustInjector(f, "testdata/native/injector.yaml"), nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := inject.DecodeReview(body)
		if err != nil {
			return
		}
		resp := h.Review(review.Request)
		if resp.UID != review.Request.UID {
			t.Fatalf("uid %q, want %q", resp.UID, review.Request.UID)
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
			t.Fatal("denied without a message")
		}
		if resp.Patch == nil {
			return
		}
		patched := applyPatch(t, review.Request.Object.Raw, resp.Patch)
		var pod corev1.Pod
		if err := json.Unmarshal(patched, &pod); err != nil {
			t.Fatalf("patched pod: %v", err)
		}
		if len(pod.Spec.Containers) == 0 {
			return // the API server refuses a pod without containers anyway
		}
		if err := validatePod(pod.Spec); err != nil {
			t.Fatalf("patched pod invalid: %v\nin: %s", err, body)
		}
	})
}

// FuzzPlanAnnotations fuzzes the annotations the injector parses (opt-out,
// tenant, the four resource quantities): a pod is skipped, refused with a
// message, or injected with requests within limits and a valid pod.
func FuzzPlanAnnotations(f *testing.F) {
	f.Add("true", "3d9c3b1e-2a4f-4c55-8f0e-9b7a1c2d3e4f", "100m", "1", "128Mi", "512Mi")
	f.Add("false", "", "", "", "", "")
	f.Add("", "acme", "1e3", "0.5", "1Ei", "-1")
	f.Add("yes", "", "9999999999999999999999", "1m", "0", "1k")
	in := mustInjector(f, "testdata/native/injector.yaml")
	f.Fuzz(func(t *testing.T, optIn, tenant, cpuReq, cpuLim, memReq, memLim string) {
		ann := map[string]string{}
		for k, v := range map[string]string{
			inject.AnnotationInject: optIn, inject.AnnotationTenant: tenant,
			inject.AnnotationCPURequest: cpuReq, inject.AnnotationCPULimit: cpuLim,
			inject.AnnotationMemoryRequest: memReq, inject.AnnotationMemoryLimit: memLim,
		} {
			if v != "" {
				ann[k] = v
			}
		}
		outcome, m, _, err := in.Plan(podMeta(ann), podSpec())
		if err != nil {
			if _, ok := err.(*inject.DeniedError); !ok {
				t.Fatalf("error %T %v, want a *DeniedError", err, err)
			}
			return
		}
		if outcome == inject.Skipped {
			if optIn != "false" {
				t.Fatalf("skipped with %s=%q", inject.AnnotationInject, optIn)
			}
			return
		}
		meta, spec := podMeta(ann), podSpec()
		m.Apply(&meta, &spec)
		if err := validatePod(spec); err != nil {
			t.Fatal(err)
		}
		for _, c := range spec.InitContainers {
			for name, q := range c.Resources.Requests {
				if q.Sign() <= 0 {
					t.Fatalf("%s request %s", name, q.String())
				}
			}
		}
	})
}
