package deploy_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestHelmServerDryRun sends every object the ci/ values render to a real
// kube-apiserver (with a real etcd) as a server-side dry-run create with
// strict field validation: the API server's own defaulting, validation and
// admission, without a kubelet or controllers. Opt-in: the two binaries are
// built from the Go module proxy by `make envtest-bin` (tools/kube, about 7
// minutes the first time) and found through TALOS_TEST_KUBE_BIN.
func TestHelmServerDryRun(t *testing.T) {
	cfg := startAPIServer(t, kubeBinDir(t))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	ctx := t.Context()
	for _, ns := range []string{releaseNS, "orders"} {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ns}}}
		if _, err := dyn.Resource(nsGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sent := 0
	for name, r := range renderCI(t) {
		for _, o := range r.objs {
			var obj unstructured.Unstructured
			if err := sigsyaml.Unmarshal(o.raw, &obj.Object); err != nil {
				t.Fatalf("%s %s: %v", name, o.source, err)
			}
			gvk := obj.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if apimeta.IsNoMatchError(err) {
				// ServiceMonitor, cert-manager and Istio kinds: no CRDs on
				// this server. The strict structs of helm_test.go cover them.
				continue
			}
			if err != nil {
				t.Fatalf("%s %v: %v", name, gvk, err)
			}
			var res dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if m.Scope.Name() == apimeta.RESTScopeNameNamespace {
				res = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
			}
			_, err = res.Create(ctx, &obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
			if err != nil {
				t.Errorf("%s: %s %s/%s: %v", name, o.kind, obj.GetNamespace(), obj.GetName(), err)
				continue
			}
			sent++
		}
	}
	t.Logf("%d objects accepted by the API server (dry run)", sent)

	// The server really validates: a broken object is refused.
	bad := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "Bad_Name", "namespace": releaseNS},
		"spec":     map[string]any{"ports": []any{map[string]any{"port": 80}}, "selectr": map[string]any{}}}}
	_, err = dyn.Resource(svcGVR).Namespace(releaseNS).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
	if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
		t.Errorf("a Service with a bad name and an unknown field: %v, want Invalid or BadRequest", err)
	}
}

var (
	nsGVR  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	svcGVR = schema.GroupVersionResource{Version: "v1", Resource: "services"}
)

// kubeBinDir is the folder of the etcd and kube-apiserver binaries, from
// TALOS_TEST_KUBE_BIN; without it (or with -short) the test is skipped.
func kubeBinDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TALOS_TEST_KUBE_BIN")
	if dir == "" {
		t.Skip("TALOS_TEST_KUBE_BIN is not set: run `make envtest-bin` and set it to bin/envtest (or run `make helm-dryrun`)")
	}
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	return dir
}

// rsaKeyPEM is a service-account signing key for the API server.
func rsaKeyPEM(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// startAPIServer starts etcd and kube-apiserver on loopback for the test,
// and returns a client config with a static admin token.
func startAPIServer(t *testing.T, binDir string) *rest.Config {
	t.Helper()
	work := t.TempDir()
	etcdURL := startWithFreePorts(t, 2, func(ports []int) (*process, func() error) {
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		p := startProcess(t, nil, filepath.Join(binDir, "etcd"), "-data-dir", filepath.Join(work, "etcd"+strconv.Itoa(ports[0])),
			"-listen-client-urls", client, "-listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(ports[1]))
		return p, func() error {
			return pollHTTP(p, func() *http.Client { return http.DefaultClient }, client+"/health", nil)
		}
	})[0]

	const token = "talos-test-admin-token-0123456789"
	tokens := filepath.Join(work, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(work, "sa.key")
	if err := os.WriteFile(saKey, rsaKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(work, "certs")
	var cfg *rest.Config
	startWithFreePorts(t, 1, func(ports []int) (*process, func() error) {
		host := "https://127.0.0.1:" + strconv.Itoa(ports[0])
		p := startProcess(t, nil, filepath.Join(binDir, "kube-apiserver"),
			"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[0]),
			"--cert-dir="+certDir, "--token-auth-file="+tokens, "--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saKey,
			"--service-account-signing-key-file="+saKey,
			// Only allocated from, never dialled: no controller runs.
			"--service-cluster-ip-range=10.96.0.0/24")
		return p, func() error {
			cfg = &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(certDir, "apiserver.crt")}}
			return pollHTTP(p, func() *http.Client { return apiClient(certDir) }, host+"/readyz", map[string]string{"Authorization": "Bearer " + token})
		}
	})
	return cfg
}

// startWithFreePorts picks n free ports, starts a process on them and waits
// until ready passes; a process that lost a port to another one before it
// bound it is started again on new ports. It returns the ports as
// http://127.0.0.1:port URLs.
func startWithFreePorts(t *testing.T, n int, start func(ports []int) (*process, func() error)) []string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		ports := make([]int, n)
		for i := range ports {
			ports[i] = freePort(t)
		}
		_, ready := start(ports)
		err := ready()
		if err == nil {
			var out []string
			for _, p := range ports {
				out = append(out, "http://127.0.0.1:"+strconv.Itoa(p))
			}
			return out
		}
		if !errors.Is(err, errPortTaken) || attempt == 2 {
			t.Fatal(err)
		}
	}
}

// apiClient trusts the self-signed certificate kube-apiserver writes into
// its cert dir; until it is there, the client trusts nothing and fails.
func apiClient(certDir string) *http.Client {
	pool := x509.NewCertPool()
	if data, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err == nil {
		pool.AppendCertsFromPEM(data)
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// pollHTTP polls url until it answers 200, the process exits, or 60 s pass.
func pollHTTP(p *process, client func() *http.Client, url string, headers map[string]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := client().Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-p.done:
			out := p.out.String()
			if strings.Contains(strings.ToLower(out), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("exited before %s answered:\n%s", url, out)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after 60s (last: %v):\n%s", url, last, p.out.String())
		case <-tick.C:
		}
	}
}
