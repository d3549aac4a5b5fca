//go:build !unix

package sqlite

// isReadOnlyFS reports a read-only file system where the platform says so;
// elsewhere the error reads as an unwritable directory.
func isReadOnlyFS(error) bool { return false }
