package cockroach

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

// migrationFiles are the migrations that replace PostgreSQL's; see
// Migrations.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// overlay is a flat fs.FS holding the files of base, except that a file of
// top replaces the one of the same name in base, and top's other files are
// added. It is what migrate.Load reads: ReadDir of "." and ReadFile.
type overlay struct{ top, base fs.FS }

// Open implements fs.FS. The directory "." is base's; list it with ReadDir.
func (o overlay) Open(name string) (fs.File, error) {
	if name != "." {
		if f, err := o.top.Open(name); err == nil {
			return f, nil
		}
	}
	return o.base.Open(name)
}

// ReadFile implements fs.ReadFileFS.
func (o overlay) ReadFile(name string) ([]byte, error) {
	if b, err := fs.ReadFile(o.top, name); err == nil {
		return b, nil
	}
	return fs.ReadFile(o.base, name)
}

// ReadDir implements fs.ReadDirFS: the entries of both, top's winning, by
// name.
func (o overlay) ReadDir(name string) ([]fs.DirEntry, error) {
	base, err := fs.ReadDir(o.base, name)
	if err != nil {
		return nil, err
	}
	top, err := fs.ReadDir(o.top, name)
	if err != nil {
		return nil, err
	}
	entries := make(map[string]fs.DirEntry, len(base)+len(top))
	for _, e := range base {
		entries[e.Name()] = e
	}
	for _, e := range top {
		entries[e.Name()] = e
	}
	out := make([]fs.DirEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}
