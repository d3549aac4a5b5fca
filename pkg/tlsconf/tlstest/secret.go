package tlstest

import (
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
)

// volumeSeq names each generation of a secret volume's files uniquely.
var volumeSeq atomic.Uint64

// WriteSecretVolume writes files (name to contents) into dir the way the
// kubelet's atomic writer updates a mounted Secret (and so cert-manager's
// rotations reach pods): the files go into a new hidden directory
// dir/..<generation>, the symlink dir/..data is swapped to it by a rename,
// each dir/<name> is a symlink to ..data/<name>, and the previous
// generation is removed. Every reader thus sees either all old or all new
// files, through paths that never change. The first call sets dir up;
// later calls rotate it. It returns the path of each file.
func WriteSecretVolume(t testing.TB, dir string, files map[string][]byte) map[string]string {
	t.Helper()
	gen := filepath.Join(dir, "..gen_"+strconv.FormatUint(volumeSeq.Add(1), 10))
	if err := os.Mkdir(gen, 0o700); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(gen, name), data, 0o600); err != nil {
			t.Fatalf("tlstest: %v", err)
		}
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	paths := make(map[string]string, len(files))
	for name := range files {
		p := filepath.Join(dir, name)
		paths[name] = p
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), p); err != nil {
			t.Fatalf("tlstest: %v", err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatalf("tlstest: %v", err)
		}
	}
	return paths
}

// SecretFiles returns the files of a cert-manager TLS Secret for the leaf
// issued by ca: tls.crt, tls.key and ca.crt.
func (l *Leaf) SecretFiles(ca *CA) map[string][]byte {
	return map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM, "ca.crt": ca.PEM}
}
