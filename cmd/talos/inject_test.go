package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestInjectCommand runs talos inject on the offline fixture of
// deploy/inject: every workload of it gets the sidecar, the rest passes.
func TestInjectCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"inject", "-c", "../../deploy/inject/testdata/native/injector.yaml",
		"-f", "../../deploy/inject/testdata/offline/in.yaml"}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if n := strings.Count(stdout.String(), "name: talos-proxy\n"); n != 7 {
		t.Errorf("%d sidecars injected, want 7:\n%s", n, stdout.String())
	}
	if !strings.Contains(stdout.String(), "kind: Service") {
		t.Error("the Service was dropped")
	}

	stdout.Reset()
	err = run(t.Context(), []string{"inject", "-c", "../../deploy/inject/testdata/native/injector.yaml", "-f", "testdata/none.yaml"}, nil, &stdout, &stderr)
	if err == nil {
		t.Error("a missing file passed")
	}
	err = run(t.Context(), []string{"inject", "serve", "--config", "../../deploy/inject/testdata/native/injector.yaml", "--listen", "127.0.0.1:0"}, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "cert_file and key_file are required") {
		t.Errorf("serve without a certificate: %v", err)
	}
}
