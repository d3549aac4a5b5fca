package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const testVersion = "v9.9.9-test"

var testCreated = time.Unix(1767225600, 0).UTC() // 2026-01-01

// TestImage builds the talos binary the way make image does, builds the
// image from it twice into t.TempDir(), reads the tarball and the OCI
// layout back with go-containerregistry and checks the image: its config
// (user, entrypoint, ports, labels, no secrets), its one layer (sorted
// entries with fixed owners and times, the binary executable and runnable,
// the nonroot user, the CA bundle, /data owned by nonroot, no shell), and
// that both builds have one digest while another SOURCE_DATE_EPOCH gives
// another.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the talos binary (CGO_ENABLED=0, -trimpath): about a minute or two on a cold cache")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "talos")
	if err := BuildBinary(t.Context(), "../..", bin, runtime.GOARCH, testVersion); err != nil {
		t.Fatal(err)
	}
	opts := Options{Binary: bin, Arch: runtime.GOARCH, Version: testVersion, Revision: "0123456789abcdef0123456789abcdef01234567",
		Source: "https://github.com/talos-project/talos", Licenses: "NOASSERTION", Created: testCreated,
		// The race detector makes compress/gzip some ten times slower
		// (99 s at the default level); determinism does not depend on it.
		GzipLevel: gzip.BestSpeed}
	ref, err := name.NewTag("ghcr.io/talos-api/talos:" + testVersion)
	if err != nil {
		t.Fatal(err)
	}
	var digests, ids []v1.Hash
	for i := range 2 {
		img, err := Build(opts)
		if err != nil {
			t.Fatal(err)
		}
		d, id, err := Write(img, ref, filepath.Join(dir, "img"+string(rune('a'+i))+".tar"), filepath.Join(dir, "oci"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		digests, ids = append(digests, d), append(ids, id)
	}
	if digests[0] != digests[1] || ids[0] != ids[1] {
		t.Errorf("two builds, two digests: %s %s (image IDs %s %s)", digests[0], digests[1], ids[0], ids[1])
	}
	a, err := os.ReadFile(filepath.Join(dir, "imga.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "imgb.tar")); !bytes.Equal(a, b) {
		t.Error("the two tarballs differ")
	}
	later := opts
	later.Created = testCreated.Add(time.Second)
	if img, err := Build(later); err != nil {
		t.Fatal(err)
	} else if id, _ := img.ConfigName(); id == ids[0] {
		t.Error("another SOURCE_DATE_EPOCH gave the same digest: the time is not in the image")
	}

	img, err := tarball.ImageFromPath(filepath.Join(dir, "imga.tar"), &ref)
	if err != nil {
		t.Fatal(err)
	}
	// docker-archive keeps the config (the image ID) but rebuilds the
	// manifest with Docker media types; the OCI layout keeps the manifest.
	if id, err := img.ConfigName(); err != nil || id != ids[0] {
		t.Errorf("tarball image ID %s (%v), want %s", id, err, ids[0])
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "ocia"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digests[0] || im.Manifests[0].MediaType != types.OCIManifestSchema1 ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != testVersion {
		t.Errorf("OCI layout index %+v", im.Manifests)
	}
	ociImg, err := idx.Image(digests[0])
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := ociImg.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}

	for name, img := range map[string]v1.Image{"tarball": img, "layout": ociImg} {
		t.Run(name, func(t *testing.T) {
			checkConfig(t, img)
			checkLayer(t, img, dir, name == "layout")
		})
	}
}

func checkConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if diff := cmp.Diff([]string{"/talos"}, c.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"serve"}, c.Cmd); diff != "" {
		t.Errorf("cmd (-want +got):\n%s", diff)
	}
	wantPorts := map[string]struct{}{"4420/tcp": {}, "4421/tcp": {}, "4422/tcp": {}, "9191/tcp": {}, "4430/tcp": {}, "4432/tcp": {}}
	if diff := cmp.Diff(wantPorts, c.ExposedPorts); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if c.WorkingDir != "/data" {
		t.Errorf("working dir %q", c.WorkingDir)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":    "talos",
		"org.opencontainers.image.source":   "https://github.com/talos-project/talos",
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.licenses": "NOASSERTION",
		"org.opencontainers.image.created":  "2026-01-01T00:00:00Z",
	}
	if diff := cmp.Diff(wantLabels, c.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	for _, e := range c.Env {
		up := strings.ToUpper(e)
		if strings.Contains(up, "SECRET") || strings.Contains(up, "TOKEN") || strings.Contains(up, "PASSWORD") || strings.HasPrefix(up, "TALOS_") {
			t.Errorf("env %q in the image", e)
		}
	}
	if !cf.Created.Time.Equal(testCreated) || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("created %v, platform %s/%s", cf.Created, cf.OS, cf.Architecture)
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(testCreated) {
			t.Errorf("history entry created %v", h.Created)
		}
	}
}

func checkLayer(t *testing.T, img v1.Image, dir string, oci bool) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); oci && mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	contents := map[string][]byte{}
	headers := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		headers[h.Name] = h
		if !h.ModTime.Equal(testCreated) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v, owner names %q %q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		if h.Mode&0o022 != 0 || h.Mode&0o7000 != 0 {
			t.Errorf("%s: mode %o is group/world-writable or setuid", h.Name, h.Mode)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		contents[h.Name] = b
	}
	want := []string{"data/", "etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "talos"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("layer entries, in order (-want +got):\n%s", diff)
	}
	if !slices.IsSorted(names) {
		t.Error("entries not sorted")
	}
	for _, n := range names {
		if strings.HasSuffix(n, "sh") || strings.HasPrefix(n, "bin/") {
			t.Errorf("%s: a shell or bin directory in the image", n)
		}
	}
	if h := headers["data/"]; h.Uid != 65532 || h.Gid != 65532 || h.Typeflag != tar.TypeDir {
		t.Errorf("/data: uid %d gid %d type %c", h.Uid, h.Gid, h.Typeflag)
	}
	if h := headers["talos"]; h.Mode != 0o755 || h.Typeflag != tar.TypeReg || h.Uid != 0 {
		t.Errorf("/talos: mode %o type %c uid %d", h.Mode, h.Typeflag, h.Uid)
	}
	if !bytes.HasPrefix(contents["talos"], []byte("\x7fELF")) {
		t.Error("/talos is not an ELF binary")
	}
	if !strings.Contains(string(contents["etc/passwd"]), "\nnonroot:x:65532:65532:") ||
		!strings.Contains(string(contents["etc/group"]), "\nnonroot:x:65532:\n") {
		t.Errorf("passwd %q group %q", contents["etc/passwd"], contents["etc/group"])
	}
	if n := countCerts(t, contents["etc/ssl/certs/ca-certificates.crt"]); n < 100 {
		t.Errorf("%d CA certificates", n)
	}
	// The binary in the image runs, and carries its version.
	if runtime.GOOS == "linux" {
		exe := filepath.Join(t.TempDir(), "extracted-talos")
		if err := os.WriteFile(exe, contents["talos"], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(t.Context(), exe, "version").CombinedOutput()
		// The first line is the version; commit, date and Go version follow.
		if first, _, _ := strings.Cut(string(out), "\n"); err != nil || first != "talos "+testVersion {
			t.Errorf("talos version: %q, %v", out, err)
		}
	}
}

func countCerts(t *testing.T, b []byte) int {
	t.Helper()
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			t.Errorf("CA bundle: %v", err)
		}
		n++
	}
	return n
}

func TestTagOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"v1.2.3": "v1.2.3", "v1.2.3+dirty/x": "v1.2.3-dirty-x", strings.Repeat("a", 200): strings.Repeat("a", 128)} {
		if got := tagOf(in); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", in, got, want)
		}
	}
}
