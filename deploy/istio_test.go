package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The Istio resources are decoded into structs that spell out every field the
// files use, with unknown fields rejected, so a misspelt field fails here
// rather than being ignored by the cluster. No Kubernetes or Istio libraries.

type meta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
		// The chart's objects carry labels (helm_test.go).
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
}

type istioOperator struct {
	meta `yaml:",inline"`
	Spec struct {
		MeshConfig struct {
			ExtensionProviders []struct {
				Name              string        `yaml:"name"`
				EnvoyExtAuthzGrpc *extAuthzGrpc `yaml:"envoyExtAuthzGrpc"`
			} `yaml:"extensionProviders"`
		} `yaml:"meshConfig"`
	} `yaml:"spec"`
}

type extAuthzGrpc struct {
	Service       string `yaml:"service"`
	Port          int    `yaml:"port"`
	Timeout       string `yaml:"timeout"`
	FailOpen      *bool  `yaml:"failOpen"`
	StatusOnError string `yaml:"statusOnError"`
}

// providerProblems checks one extension provider: the sidecar's ext_authz
// port, a bounded timeout, and fail closed with 503.
func providerProblems(name string, g *extAuthzGrpc) []string {
	if g == nil {
		return []string{fmt.Sprintf("provider %s: not envoyExtAuthzGrpc", name)}
	}
	var out []string
	if g.Port != 9191 {
		out = append(out, fmt.Sprintf("provider %s: port %d, want 9191", name, g.Port))
	}
	if g.FailOpen == nil || *g.FailOpen {
		out = append(out, fmt.Sprintf("provider %s: failOpen must be set to false", name))
	}
	if d, err := time.ParseDuration(g.Timeout); err != nil || d <= 0 || d > time.Second {
		out = append(out, fmt.Sprintf("provider %s: timeout %q, want a duration in (0, 1s]", name, g.Timeout))
	}
	if g.StatusOnError != "503" {
		out = append(out, fmt.Sprintf("provider %s: statusOnError %q, want 503", name, g.StatusOnError))
	}
	return out
}

type authorizationPolicy struct {
	meta `yaml:",inline"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Action   string `yaml:"action"`
		Provider struct {
			Name string `yaml:"name"`
		} `yaml:"provider"`
		Rules []struct {
			To []struct {
				Operation struct {
					Paths    []string `yaml:"paths"`
					NotPaths []string `yaml:"notPaths"`
					Methods  []string `yaml:"methods"`
				} `yaml:"operation"`
			} `yaml:"to"`
		} `yaml:"rules"`
	} `yaml:"spec"`
}

type serviceEntry struct {
	meta `yaml:",inline"`
	Spec struct {
		Hosts     []string `yaml:"hosts"`
		ExportTo  []string `yaml:"exportTo"`
		Endpoints []struct {
			Address string `yaml:"address"`
		} `yaml:"endpoints"`
		Ports []struct {
			Name     string `yaml:"name"`
			Number   int    `yaml:"number"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
		Resolution string `yaml:"resolution"`
	} `yaml:"spec"`
}

// decodeOne decodes the single YAML document of path strictly into v.
func decodeOne(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: want one YAML document", path)
	}
}

func TestIstio(t *testing.T) {
	t.Parallel()
	var op istioOperator
	decodeOne(t, "istio/mesh-config.yaml", &op)
	if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
		t.Errorf("mesh-config.yaml is %s %s, want install.istio.io/v1alpha1 IstioOperator", op.APIVersion, op.Kind)
	}
	services := map[string]string{} // provider name -> service
	for _, p := range op.Spec.MeshConfig.ExtensionProviders {
		for _, problem := range providerProblems(p.Name, p.EnvoyExtAuthzGrpc) {
			t.Error(problem)
		}
		if p.EnvoyExtAuthzGrpc != nil {
			services[p.Name] = p.EnvoyExtAuthzGrpc.Service
		}
	}
	if s := services["talos"]; s != "talos-proxy.talos.svc.cluster.local" {
		t.Errorf("provider talos: service %q, want talos-proxy.talos.svc.cluster.local", s)
	}

	var ap authorizationPolicy
	decodeOne(t, "istio/authorization-policy.yaml", &ap)
	if ap.APIVersion != "security.istio.io/v1" || ap.Kind != "AuthorizationPolicy" {
		t.Errorf("authorization-policy.yaml is %s %s", ap.APIVersion, ap.Kind)
	}
	if ap.Spec.Action != "CUSTOM" {
		t.Errorf("action %q, want CUSTOM", ap.Spec.Action)
	}
	if ap.Spec.Provider.Name != "talos" {
		t.Errorf("provider %q, want talos", ap.Spec.Provider.Name)
	}
	if len(ap.Spec.Selector.MatchLabels) == 0 {
		t.Error("no selector: the policy would apply to every workload of the namespace")
	}
	if len(ap.Spec.Rules) == 0 {
		t.Error("no rules: a CUSTOM policy without rules checks nothing")
	}

	var se serviceEntry
	decodeOne(t, "istio/service-entry-local.yaml", &se)
	if se.APIVersion != "networking.istio.io/v1" || se.Kind != "ServiceEntry" {
		t.Errorf("service-entry-local.yaml is %s %s", se.APIVersion, se.Kind)
	}
	if !slices.Contains(se.Spec.Hosts, services["talos-local"]) {
		t.Errorf("ServiceEntry hosts %v lack the talos-local provider's service %q", se.Spec.Hosts, services["talos-local"])
	}
	if len(se.Spec.Endpoints) != 1 || se.Spec.Endpoints[0].Address != "127.0.0.1" || se.Spec.Resolution != "STATIC" {
		t.Errorf("ServiceEntry must resolve statically to 127.0.0.1")
	}
	if len(se.Spec.Ports) != 1 || se.Spec.Ports[0].Number != 9191 || se.Spec.Ports[0].Protocol != "GRPC" {
		t.Errorf("ServiceEntry ports %+v, want 9191 GRPC", se.Spec.Ports)
	}
}
