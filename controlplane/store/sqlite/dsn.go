package sqlite

import (
	"errors"
	"fmt"
	"strings"
)

// memory is SQLite's name for a private in-memory database.
const memory = ":memory:"

// ParseDSN returns the database path of dsn, which is a plain path,
// "sqlite://PATH" or "sqlite3://PATH" (so "sqlite:///var/lib/talos.db" is
// absolute and "sqlite://talos.db" relative), or ":memory:". Query parameters
// and "file:" URIs are rejected: the connection settings are this package's
// to choose.
func ParseDSN(dsn string) (string, error) {
	path := dsn
	for _, scheme := range []string{"sqlite://", "sqlite3://"} {
		if rest, ok := strings.CutPrefix(dsn, scheme); ok {
			path = rest
			break
		}
	}
	switch {
	case path == "":
		return "", errors.New("parse sqlite dsn: empty path")
	case strings.Contains(path, "://"):
		return "", fmt.Errorf("parse sqlite dsn %q: not a sqlite:// or sqlite3:// DSN", dsn)
	case strings.HasPrefix(path, "file:"):
		return "", fmt.Errorf("parse sqlite dsn %q: file: URIs are not supported; give a path", dsn)
	case strings.ContainsAny(path, "?#"):
		return "", fmt.Errorf("parse sqlite dsn %q: query parameters are not supported", dsn)
	}
	return path, nil
}
