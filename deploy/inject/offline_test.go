package inject_test

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/talos-project/talos/deploy/inject"
)

// TestTransform injects testdata/offline/in.yaml (every workload kind, an
// opted-out one, pass-through objects, empty documents) and compares the
// output with out.yaml. Every output document decodes strictly; each
// workload's pod spec passes validatePod and has the sidecar; the
// documents not injected come out byte for byte.
func TestTransform(t *testing.T) {
	t.Parallel()
	in := mustInjector(t, "testdata/native/injector.yaml")
	src, err := os.ReadFile("testdata/offline/in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := in.Transform(bytes.NewReader(src), &out); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "testdata/offline/out.yaml", out.Bytes())

	docs := splitYAML(t, out.Bytes())
	kinds := []string{"Namespace", "Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Deployment", "Service"}
	if len(docs) != len(kinds) {
		t.Fatalf("%d documents out, want %d", len(docs), len(kinds))
	}
	for i, doc := range docs {
		spec, meta := podOf(t, kinds[i], doc)
		if spec == nil {
			continue
		}
		if err := validatePod(*spec); err != nil {
			t.Errorf("document %d (%s): %v", i+1, kinds[i], err)
		}
		injected := meta.Annotations[inject.AnnotationStatus] == inject.StatusInjected
		if optedOut := i == 8; injected == optedOut {
			t.Errorf("document %d (%s): injected %v", i+1, kinds[i], injected)
		}
	}
	for _, keep := range []string{"  name: shop   # comments and layout of untouched documents are kept\n",
		"    metadata: {labels: {app: legacy, talos.dev/inject: \"false\"}}\n", "  ports: [{port: 80, targetPort: 8080}]\n"} {
		if !strings.Contains(out.String(), keep) {
			t.Errorf("output lost %q", keep)
		}
	}
	if !strings.Contains(docs[2], "TALOS_PROXY_TENANT") {
		t.Error("the Deployment's tenant annotation did not reach the sidecar")
	}
}

func splitYAML(t *testing.T, data []byte) []string {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []string
	for {
		d, err := r.Read()
		if err != nil {
			break
		}
		docs = append(docs, string(d))
	}
	return docs
}

// podOf decodes a document of kind strictly and returns its pod template.
func podOf(t *testing.T, kind, doc string) (*corev1.PodSpec, *corev1.PodTemplateSpec) {
	t.Helper()
	var obj any
	switch kind {
	case "Pod":
		obj = &corev1.Pod{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "ReplicaSet":
		obj = &appsv1.ReplicaSet{}
	case "Job":
		obj = &batchv1.Job{}
	case "CronJob":
		obj = &batchv1.CronJob{}
	default:
		return nil, nil
	}
	j, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(j, obj); err != nil {
		t.Fatalf("%s does not decode strictly: %v", kind, err)
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec, &corev1.PodTemplateSpec{ObjectMeta: o.ObjectMeta}
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec, &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template.Spec, &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec, &o.Spec.Template
	case *appsv1.ReplicaSet:
		return &o.Spec.Template.Spec, &o.Spec.Template
	case *batchv1.Job:
		return &o.Spec.Template.Spec, &o.Spec.Template
	case *batchv1.CronJob:
		return &o.Spec.JobTemplate.Spec.Template.Spec, &o.Spec.JobTemplate.Spec.Template
	}
	return nil, nil
}

func TestTransform_Errors(t *testing.T) {
	t.Parallel()
	in := mustInjector(t, "testdata/native/injector.yaml")
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown field": {"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: b, imagePolicy: x}]}\n", "imagePolicy"},
		"duplicate key": {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, name: q}\nspec: {containers: [{name: a, image: b}]}\n", "name"},
		"refused":       {"---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {talos.dev/proxy-cpu-limit: \"-1\"}}\nspec: {containers: [{name: a, image: b}]}\n", "talos.dev/proxy-cpu-limit"},
		"second doc":    {"kind: ConfigMap\napiVersion: v1\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostNetwork: true, containers: [{name: a, image: b}]}\n", "document 2"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := in.Transform(strings.NewReader(tc.doc), &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %q on error", out.String())
			}
		})
	}
}
