package extauthz_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/talos-project/talos/extauthz"
)

var update = flag.Bool("update", false, "rewrite the golden CheckResponse files in testdata/check")

// TestServer_Check_golden runs each CheckRequest fixture in testdata/check
// over real gRPC and compares the response with its .golden.json file.
func TestServer_Check_golden(t *testing.T) {
	t.Parallel()
	fixtures, err := filepath.Glob(filepath.Join("testdata", "check", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	client := newTestGRPC(t, mustServer(t, newFake(), extauthz.Options{RemoveCredential: true, MetadataHeaders: []string{"plan"}}))
	n := 0
	for _, path := range fixtures {
		if strings.HasSuffix(path, ".golden.json") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var req authv3.CheckRequest
			if err := protojson.Unmarshal(in, &req); err != nil {
				t.Fatalf("fixture: %v", err)
			}
			got, err := client.Check(t.Context(), &req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			golden := strings.TrimSuffix(path, ".json") + ".golden.json"
			if *update {
				b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			var want authv3.CheckResponse
			if err := protojson.Unmarshal(b, &want); err != nil {
				t.Fatalf("golden: %v", err)
			}
			if diff := cmp.Diff(&want, got, protocmp.Transform()); diff != "" {
				t.Errorf("response (-%s +got):\n%s", golden, diff)
			}
		})
	}
	if n == 0 {
		t.Fatal("no fixtures in testdata/check")
	}
}
