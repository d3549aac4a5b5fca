package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv("SOURCE_DATE_EPOCH"), os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// run is the command: flags, then build, then write.
func run(ctx context.Context, args []string, sourceDateEpoch string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var (
		binary     = fs.String("binary", "", "static talos binary (default: build one into bin/)")
		arch       = fs.String("arch", runtime.GOARCH, "GOARCH of the image")
		repo       = fs.String("repo", "ghcr.io/talos-api/talos", "image repository; the tag is the version")
		version    = fs.String("version", "", "version (default: git describe --tags --always)")
		revision   = fs.String("revision", "", "commit (default: git rev-parse HEAD)")
		source     = fs.String("source", "https://github.com/talos-project/talos", "org.opencontainers.image.source")
		licenses   = fs.String("licenses", "NOASSERTION", "org.opencontainers.image.licenses (SPDX)")
		out        = fs.String("out", "bin/talos-image.tar", "tarball for docker load / podman load / crane")
		layoutDir  = fs.String("layout", "bin/talos-image-oci", "OCI image layout directory (empty: none)")
		moduleRoot = fs.String("C", ".", "module root")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if *version == "" {
		if *version, err = git(ctx, *moduleRoot, "describe", "--tags", "--always"); err != nil {
			return err
		}
	}
	if *revision == "" {
		if *revision, err = git(ctx, *moduleRoot, "rev-parse", "HEAD"); err != nil {
			return err
		}
	}
	if sourceDateEpoch == "" {
		if sourceDateEpoch, err = git(ctx, *moduleRoot, "log", "-1", "--format=%ct"); err != nil {
			return err
		}
	}
	secs, err := strconv.ParseInt(sourceDateEpoch, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a Unix time", sourceDateEpoch)
	}
	ref, err := name.NewTag(*repo + ":" + tagOf(*version))
	if err != nil {
		return err
	}
	if *binary == "" {
		*binary = filepath.Join(*moduleRoot, "bin", "talos-linux-"+*arch)
		if err := BuildBinary(ctx, *moduleRoot, *binary, *arch, *version); err != nil {
			return err
		}
	}
	img, err := Build(Options{Binary: *binary, Arch: *arch, Version: *version, Revision: *revision,
		Source: *source, Licenses: *licenses, Created: time.Unix(secs, 0)})
	if err != nil {
		return err
	}
	digest, id, err := Write(img, ref, *out, *layoutDir)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s@%s\nimage id %s\ntarball %s\n", ref, digest, id, *out)
	if err == nil && *layoutDir != "" {
		_, err = fmt.Fprintf(stdout, "oci layout %s\n", *layoutDir)
	}
	return err
}

// tagOf turns a version into a valid tag ([A-Za-z0-9_.-], at most 128).
func tagOf(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 128 {
		b = b[:128]
	}
	return string(b)
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
