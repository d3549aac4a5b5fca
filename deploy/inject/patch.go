package inject

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PatchOp is one RFC 6902 operation. Injection only adds.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// pointerEscaper escapes one RFC 6901 reference token: "~" first, then "/"
// (an annotation key such as talos.dev/status becomes talos.dev~1status).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// Patch returns the JSONPatch that makes m on a pod whose metadata and spec
// are meta and spec. A list or map the pod does not have yet (no
// annotations, no init containers, no volumes) is added whole: an "add" to
// a member of a missing object fails, and "/-" needs an array.
func (m *Mutation) Patch(meta metav1.ObjectMeta, spec corev1.PodSpec) []PatchOp {
	var ops []PatchOp
	if meta.Annotations == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: m.Annotations})
	} else {
		keys := make([]string, 0, len(m.Annotations))
		for k := range m.Annotations {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + pointerEscaper.Replace(k), Value: m.Annotations[k]})
		}
	}
	for i, v := range m.Volumes {
		ops = append(ops, addToList("/spec/volumes", spec.Volumes == nil && i == 0, v))
	}
	if m.Native {
		ops = append(ops, addToList("/spec/initContainers", spec.InitContainers == nil, m.Container))
	} else {
		ops = append(ops, addToList("/spec/containers", spec.Containers == nil, m.Container))
	}
	return ops
}

// addToList appends v to the array at path, creating the array when the
// object has none. A nil Go slice is an absent (omitempty) member.
func addToList[T any](path string, missing bool, v T) PatchOp {
	if missing {
		return PatchOp{Op: "add", Path: path, Value: []T{v}}
	}
	return PatchOp{Op: "add", Path: path + "/-", Value: v}
}
