package inject_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/talos-project/talos/deploy/inject"
)

func TestParseConfig_Defaults(t *testing.T) {
	t.Parallel()
	c, err := inject.ParseConfig([]byte("image: ghcr.io/talos-api/talos:v1\nupstream: talos:4421\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"pull":    string(c.ImagePullPolicy),
		"secret":  c.TokenSecret.Name + "/" + c.TokenSecret.Key,
		"cpu":     c.Resources.Requests.Cpu().String() + "/" + c.Resources.Limits.Cpu().String(),
		"memory":  c.Resources.Requests.Memory().String() + "/" + c.Resources.Limits.Memory().String(),
		"native":  boolString(*c.NativeSidecar),
		"metrics": boolString(*c.PrometheusScrape),
	}
	want := map[string]string{"pull": "IfNotPresent", "secret": "talos-sidecar-token/token", "cpu": "50m/200m",
		"memory": "64Mi/256Mi", "native": "true", "metrics": "true"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestParseConfig_Errors(t *testing.T) {
	t.Parallel()
	const base = "image: ghcr.io/talos-api/talos:v1\nupstream: talos:4421\n"
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown key":        {base + "upstreamToken: x\n", "unknown field"},
		"case mismatch":      {base + "NativeSidecar: false\n", "unknown field"},
		"duplicate key":      {base + "image: other\n", "already set"},
		"no image":           {"upstream: talos:4421\n", "image: is required"},
		"no upstream":        {"image: x\n", "upstream: is required"},
		"upstream scheme":    {"image: x\nupstream: dns:///talos:4421\n", "proxy.upstream"},
		"upstream no port":   {"image: x\nupstream: talos\n", "proxy.upstream"},
		"bad tenant":         {base + "tenant: acme\n", "proxy.tenant"},
		"pull policy":        {base + "imagePullPolicy: Sometimes\n", "imagePullPolicy"},
		"secret name":        {base + "tokenSecret: {name: Bad_Name, key: token}\n", "tokenSecret.name"},
		"configmap name":     {base + "configMap: /etc/x\n", "configMap"},
		"env redefined":      {base + "env: [{name: TALOS_PROXY_UPSTREAM, value: x}]\n", "set by the injector"},
		"env twice":          {base + "env: [{name: A, value: one}, {name: A, value: two}]\n", "appears twice"},
		"env name":           {base + "env: [{name: 'a b', value: x}]\n", "environment variable name"},
		"request over limit": {base + "resources: {requests: {cpu: '1'}}\n", "above its limit"},
		"bad quantity":       {base + "resources: {requests: {cpu: lots}}\n", "quantities must match"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := inject.ParseConfig([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestParseConfig_NoToken(t *testing.T) {
	t.Parallel()
	c, err := inject.ParseConfig([]byte("image: x\nupstream: talos:4421\ntokenSecret: {name: '', key: ''}\n"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := inject.New(c, "v")
	if err != nil {
		t.Fatal(err)
	}
	_, m, _, err := in.Plan(podMeta(nil), podSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Container.Env {
		if e.Name == "TALOS_PROXY_UPSTREAM_TOKEN" {
			t.Errorf("token injected: %+v", e)
		}
	}
}
