package sqlite_test

import (
	"strings"
	"testing"

	"github.com/talos-project/talos/controlplane/store/sqlite"
)

// FuzzParseDSN: whatever the DSN, a path that comes back is a plain path
// (never a URI, never with parameters that would change the connection
// settings this package chooses), and ParseDSN never panics.
func FuzzParseDSN(f *testing.F) {
	for _, s := range []string{"talos.db", "sqlite:///var/lib/talos.db", "sqlite3://x.db", ":memory:",
		"file:x.db?mode=ro", "sqlite://x.db?_pragma=foreign_keys(0)", "sqlite://", "postgres://x", "sqlite://a#b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		p, err := sqlite.ParseDSN(dsn)
		if err != nil {
			return
		}
		switch {
		case p == "":
			t.Fatal("empty path accepted")
		case strings.ContainsAny(p, "?#"):
			t.Fatalf("path %q carries parameters", p)
		case strings.Contains(p, "://"), strings.HasPrefix(p, "file:"):
			t.Fatalf("path %q is a URI", p)
		}
	})
}
