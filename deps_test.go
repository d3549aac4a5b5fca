package layout_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/talos-project/talos"

type pkg struct {
	ImportPath string
	Imports    []string
}

// listPackages returns every package of the module with its direct imports.
func listPackages(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p.Imports
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// chain finds an import path from `from` to a package for which bad holds,
// for the failure message. bad gets full import paths.
func chain(pkgs map[string][]string, from string, bad func(string) bool) []string {
	seen := map[string]bool{}
	var walk func(p string) []string
	walk = func(p string) []string {
		if seen[p] {
			return nil
		}
		seen[p] = true
		for _, imp := range pkgs[p] {
			if bad(imp) {
				return []string{p, imp}
			}
			if _, ours := pkgs[imp]; ours {
				if c := walk(imp); c != nil {
					return append([]string{p}, c...)
				}
			}
		}
		return nil
	}
	return walk(from)
}

func ours(p string) bool { return under(p, module) }

func stdlib(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }

// ourUnder reports whether p is a package of this module under dir.
func ourUnder(p, dir string) bool { return ours(p) && under(rel(p), dir) }

// kubernetes reports an import of the Kubernetes API machinery, or of ours
// that brings it (the injector).
func kubernetes(p string) bool {
	return strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") || ourUnder(p, "deploy/inject")
}

// TestDependencyRule enforces the dependency rule of ARCHITECTURE.md and
// STYLE.md over the transitive imports of every package in the module.
func TestDependencyRule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	pkgs := listPackages(t)
	// Packages that may import pkg/api directly: the adapters and the wiring.
	apiImporters := []string{"controlplane", "controlplane/grpcapi", "controlplane/httpapi", "controlplane/xds",
		"sidecar/upstream", "sidecar/invalidation", "extauthz", "pkg/apiconv", "cmd/talos", "bench"}

	type rule struct {
		name string
		from string // packages under this directory
		bad  func(imp string) bool
	}
	rules := []rule{
		{"pkg/credential imports only the standard library", "pkg/credential",
			func(p string) bool { return !stdlib(p) && !ourUnder(p, "pkg/credential") }},
		{"pkg/* never imports controlplane, sidecar, extauthz or cmd", "pkg",
			func(p string) bool {
				return ourUnder(p, "controlplane") || ourUnder(p, "sidecar") || ourUnder(p, "extauthz") || ourUnder(p, "cmd")
			}},
		// pkg/config parses role names and identity patterns with the rules
		// of pkg/credential (standard library only), so that configuration
		// and enforcement cannot disagree.
		{"pkg/config imports only pkg/credential of ours", "pkg/config",
			func(p string) bool { return ours(p) && !ourUnder(p, "pkg/config") && !ourUnder(p, "pkg/credential") }},
		{"pkg/api is a leaf", "pkg/api",
			func(p string) bool { return ours(p) && !ourUnder(p, "pkg/api") }},
		{"controlplane never imports sidecar or extauthz", "controlplane",
			func(p string) bool { return ourUnder(p, "sidecar") || ourUnder(p, "extauthz") }},
		{"sidecar never imports controlplane", "sidecar",
			func(p string) bool { return ourUnder(p, "controlplane") }},
		{"extauthz imports neither sidecar nor controlplane", "extauthz",
			func(p string) bool { return ourUnder(p, "sidecar") || ourUnder(p, "controlplane") }},
		{"stores never import the keys service", "controlplane/store",
			func(p string) bool { return ourUnder(p, "controlplane/keys") }},
		{"the service layer never sees protobuf types", "controlplane/keys",
			func(p string) bool {
				return ourUnder(p, "pkg/api") || strings.HasPrefix(p, "google.golang.org/protobuf")
			}},
		// Kubernetes types belong to the injector (deploy/inject) and the
		// wiring; the processes that verify keys never link them.
		{"controlplane never imports Kubernetes types", "controlplane", kubernetes},
		{"sidecar never imports Kubernetes types", "sidecar", kubernetes},
		{"extauthz never imports Kubernetes types", "extauthz", kubernetes},
		{"pkg/* never imports Kubernetes types", "pkg", kubernetes},
		{"stores never see protobuf types", "controlplane/store",
			func(p string) bool {
				return ourUnder(p, "pkg/api") || strings.HasPrefix(p, "google.golang.org/protobuf")
			}},
	}
	for _, r := range rules {
		for p := range pkgs {
			if !ourUnder(p, r.from) {
				continue
			}
			if c := chain(pkgs, p, r.bad); c != nil {
				t.Errorf("%s: %s", r.name, strings.Join(c, " -> "))
			}
		}
	}
	for p, imps := range pkgs {
		for _, imp := range imps {
			if !ourUnder(imp, "pkg/api") || ourUnder(p, "pkg/api") || slices.Contains(apiImporters, rel(p)) {
				continue
			}
			t.Errorf("only adapters may import pkg/api: %s imports %s", p, imp)
		}
	}
}
