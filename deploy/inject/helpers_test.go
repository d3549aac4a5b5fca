package inject_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"

	"github.com/talos-project/talos/deploy/inject"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const testVersion = "v1.2.3"

func mustInjector(t testing.TB, cfgFile string) *inject.Injector {
	t.Helper()
	cfg, err := inject.LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	in, err := inject.New(cfg, testVersion)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// checkGolden compares got with the golden file, or rewrites it with
// -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", filepath.Base(path), got, want)
	}
}

func indentJSON(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// applyPatch applies an RFC 6902 patch to doc with evanphx/json-patch, an
// implementation independent of the injector.
func applyPatch(t testing.TB, doc, patch []byte) []byte {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch: %v\npatch: %s", err, patch)
	}
	return out
}

// strictPod decodes a pod strictly: unknown, duplicate and case-mismatched
// fields are errors.
func strictPod(t testing.TB, data []byte) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	strict, err := kjson.UnmarshalStrict(data, &pod, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		t.Fatalf("decode pod: %v", err)
	}
	for _, e := range strict {
		t.Fatalf("pod does not decode strictly: %v", e)
	}
	return &pod
}

// validatePod is the part of the API server's pod validation
// (k8s.io/kubernetes/pkg/apis/core/validation) that injection can break:
// container names, ports, environment names, volume mounts, probes on
// named ports, resource requests within limits, restart policies, and a
// non-root security context for the sidecar.
func validatePod(spec corev1.PodSpec) error {
	names := map[string]bool{}
	hostPorts := map[int32]string{}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			return fmt.Errorf("volume %s twice", v.Name)
		}
		volumes[v.Name] = true
	}
	check := func(c corev1.Container, init bool) error {
		if c.Name == "" || names[c.Name] {
			return fmt.Errorf("container name %q empty or twice", c.Name)
		}
		names[c.Name] = true
		if c.Image == "" {
			return fmt.Errorf("container %s: no image", c.Name)
		}
		portNames := map[string]bool{}
		for _, p := range c.Ports {
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				return fmt.Errorf("container %s: port %d", c.Name, p.ContainerPort)
			}
			if other, ok := hostPorts[p.ContainerPort]; ok {
				return fmt.Errorf("port %d in containers %s and %s", p.ContainerPort, other, c.Name)
			}
			hostPorts[p.ContainerPort] = c.Name
			if p.Name != "" {
				if portNames[p.Name] || len(p.Name) > 15 {
					return fmt.Errorf("container %s: port name %q twice or too long", c.Name, p.Name)
				}
				portNames[p.Name] = true
			}
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			if e.Name == "" || env[e.Name] {
				return fmt.Errorf("container %s: env %q empty or twice", c.Name, e.Name)
			}
			env[e.Name] = true
			if e.Value != "" && e.ValueFrom != nil {
				return fmt.Errorf("container %s: env %s has value and valueFrom", c.Name, e.Name)
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				return fmt.Errorf("container %s: mount of unknown volume %s", c.Name, m.Name)
			}
		}
		for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil {
				continue
			}
			if n := pr.HTTPGet.Port.StrVal; n != "" && !portNames[n] {
				return fmt.Errorf("container %s: probe on unknown port %s", c.Name, n)
			}
		}
		for name, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				return fmt.Errorf("container %s: %s request above limit", c.Name, name)
			}
		}
		restartable := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		switch {
		case init && c.RestartPolicy != nil && !restartable:
			return fmt.Errorf("init container %s: restartPolicy %s", c.Name, *c.RestartPolicy)
		case !init && c.RestartPolicy != nil:
			return fmt.Errorf("container %s: restartPolicy set", c.Name)
		case init && !restartable && (c.ReadinessProbe != nil || c.LivenessProbe != nil || c.StartupProbe != nil):
			return fmt.Errorf("init container %s: probes without restartPolicy Always", c.Name)
		}
		if sc := c.SecurityContext; c.Name == inject.ContainerName {
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				return fmt.Errorf("sidecar may run as root")
			}
		}
		return nil
	}
	if len(spec.Containers) == 0 {
		return fmt.Errorf("no containers")
	}
	for _, c := range spec.InitContainers {
		if err := check(c, true); err != nil {
			return err
		}
	}
	for _, c := range spec.Containers {
		if err := check(c, false); err != nil {
			return err
		}
	}
	return nil
}
