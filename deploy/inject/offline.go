package inject

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// MaxManifestBytes caps one document read by [Transform].
const MaxManifestBytes = 16 << 20

// Transform reads multi-document YAML from r and writes it to w with the
// sidecar injected into every Pod and every pod template of a Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job or CronJob, by the same
// [Injector.Plan] as the webhook. Other documents, and workloads that are
// skipped (opted out, already injected), are written unchanged, byte for
// byte; an injected document is re-encoded from its typed object. A
// workload decodes strictly (unknown fields are errors); a refused one
// stops the transformation with an error naming the document.
func (in *Injector) Transform(r io.Reader, w io.Writer) error {
	yr := utilyaml.NewYAMLReader(bufio.NewReaderSize(r, 64<<10))
	var out bytes.Buffer
	for n := 1; ; n++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		if len(doc) > MaxManifestBytes {
			return fmt.Errorf("document %d: larger than %d bytes", n, MaxManifestBytes)
		}
		res, err := in.transformDoc(doc)
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		if res == nil {
			continue // only comments or blank
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(res)
		if !bytes.HasSuffix(res, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	_, err := w.Write(out.Bytes())
	return err
}

// workload is a decoded object with a pod template (or a Pod).
type workload struct {
	obj  any
	meta func() (*metav1.ObjectMeta, *corev1.PodSpec)
}

func newWorkload(apiVersion, kind string) *workload {
	switch apiVersion + " " + kind {
	case "v1 Pod":
		o := &corev1.Pod{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) { return &o.ObjectMeta, &o.Spec }}
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		}}
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		}}
	case "apps/v1 DaemonSet":
		o := &appsv1.DaemonSet{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		}}
	case "apps/v1 ReplicaSet":
		o := &appsv1.ReplicaSet{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		}}
	case "batch/v1 Job":
		o := &batchv1.Job{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
		}}
	case "batch/v1 CronJob":
		o := &batchv1.CronJob{}
		return &workload{o, func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			return &o.Spec.JobTemplate.Spec.Template.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec
		}}
	}
	return nil
}

// transformDoc returns the document to write for doc: nil for an empty
// document, doc itself when nothing is injected.
func (in *Injector) transformDoc(doc []byte) ([]byte, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	if string(bytes.TrimSpace(j)) == "null" {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		// Not an object (a list or a scalar): not ours to judge.
		return doc, nil
	}
	wl := newWorkload(tm.APIVersion, tm.Kind)
	if wl == nil {
		return doc, nil
	}
	if err := decodeJSONStrict(j, wl.obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	meta, spec := wl.meta()
	outcome, m, _, err := in.Plan(*meta, *spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if outcome == Skipped {
		return doc, nil
	}
	m.Apply(meta, spec)
	return yaml.Marshal(wl.obj)
}
