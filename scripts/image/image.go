// Command image builds the Talos container image without a Docker daemon
// and without a base image (`make image`): one layer holding the static
// binary at /talos, /etc/passwd and /etc/group with the nonroot user
// (65532), a CA bundle and a /data directory owned by that user, written as
// a docker-load/podman-load tarball and an OCI layout. Every timestamp is
// SOURCE_DATE_EPOCH (default: the last commit's time) and every tar entry
// has a fixed owner and mode, in sorted order, so two builds of one commit
// have one digest. See docs/kubernetes.md.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/google/go-containerregistry/pkg/name"
)

// The image's fixed facts.
const (
	NonrootUID   = 65532
	BinaryPath   = "/talos"
	DataDir      = "/data"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// Ports are the image's exposed ports: the control plane's HTTP, gRPC and
// metrics, and the sidecar's ext_authz, HTTP and metrics.
var Ports = []string{"4420/tcp", "4421/tcp", "4422/tcp", "9191/tcp", "4430/tcp", "4432/tcp"}

// Options describe one image.
type Options struct {
	// Binary is the static talos binary for linux/Arch.
	Binary string
	// Arch is its GOARCH.
	Arch string
	// Version and Revision (the commit) label the image.
	Version, Revision string
	// Source is the repository URL of the org.opencontainers.image.source
	// label; Licenses the SPDX expression of the licenses label.
	Source, Licenses string
	// Created is every timestamp of the image (SOURCE_DATE_EPOCH).
	Created time.Time
	// GzipLevel compresses the layer; 0 is gzip.DefaultCompression (a
	// 17.6 MB layer here; gzip.BestSpeed makes 20.1 MB).
	GzipLevel int
}

// file is one entry of the layer.
type file struct {
	path     string // without the leading slash
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// Build returns the image of o.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	created := o.Created.UTC().Truncate(time.Second)
	files := []file{
		{path: "data", dir: true, mode: 0o755, uid: NonrootUID, gid: NonrootUID},
		{path: "etc", dir: true, mode: 0o755},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n")},
		{path: "etc/ssl", dir: true, mode: 0o755},
		{path: "etc/ssl/certs", dir: true, mode: 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caBundle()},
		{path: "talos", mode: 0o755, data: bin},
	}
	layerTar, err := tarFiles(files, created)
	if err != nil {
		return nil, err
	}
	level := o.GzipLevel
	if level == 0 {
		level = gzip.DefaultCompression
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(level), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "scripts/image", Comment: "talos " + o.Version},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.Arch, "linux"
	cf.Created = v1.Time{Time: created}
	exposed := map[string]struct{}{}
	for _, p := range Ports {
		exposed[p] = struct{}{}
	}
	cf.Config = v1.Config{
		User:         strconv.Itoa(NonrootUID) + ":" + strconv.Itoa(NonrootUID),
		Entrypoint:   []string{BinaryPath},
		Cmd:          []string{"serve"},
		ExposedPorts: exposed,
		WorkingDir:   DataDir,
		// PATH lets a pod spec say command: [talos]. No secret belongs here.
		Env: []string{"PATH=/", "SSL_CERT_FILE=" + CABundlePath},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "talos",
			"org.opencontainers.image.source":   o.Source,
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.licenses": o.Licenses,
			"org.opencontainers.image.created":  created.Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// caBundle is the PEM bundle of the Mozilla NSS roots that Go's
// golang.org/x/crypto/x509roots/fallback module carries, pinned by go.sum,
// so every build holds the same roots whatever the build machine trusts.
// Roots with constraints X.509 cannot express (distrust after a date) are
// left out: a PEM file cannot carry the constraint, and keeping them would
// trust more than NSS does.
func caBundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// tarFiles writes files as an uncompressed tar in path order, with fixed
// owners, modes and times and no user or group names.
func tarFiles(files []file, mtime time.Time) ([]byte, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b file) int {
		switch {
		case a.path < b.path:
			return -1
		case a.path > b.path:
			return 1
		}
		return 0
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: mtime, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, f.path+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write writes img as a tarball that docker load, podman load and crane
// read (tagged ref), and, when layoutDir is set, as an OCI image layout
// there (replaced). It returns the manifest digest (what a registry shows
// after crane push of the layout) and the image ID (the config digest, what
// docker images shows after docker load: the docker-archive format keeps
// the config but not the OCI manifest).
func Write(img v1.Image, ref name.Tag, tarPath, layoutDir string) (digest, id v1.Hash, err error) {
	if digest, err = img.Digest(); err != nil {
		return v1.Hash{}, v1.Hash{}, err
	}
	if id, err = img.ConfigName(); err != nil {
		return v1.Hash{}, v1.Hash{}, err
	}
	if err := write(img, ref, tarPath, layoutDir); err != nil {
		return v1.Hash{}, v1.Hash{}, err
	}
	return digest, id, nil
}

func write(img v1.Image, ref name.Tag, tarPath, layoutDir string) error {
	if err := os.MkdirAll(filepath.Dir(tarPath), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		return err
	}
	if layoutDir == "" {
		return nil
	}
	if err := os.RemoveAll(layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
	}))
}

// BuildBinary builds the static, reproducible talos binary for linux/arch
// into out: no cgo, no file-system paths (-trimpath), no VCS stamp (the
// revision is in the image's labels), no build ID, the version linked in.
func BuildBinary(ctx context.Context, moduleDir, out, arch, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+version, "-o", out, "./cmd/talos")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}
