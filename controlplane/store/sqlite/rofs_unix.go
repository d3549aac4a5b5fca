//go:build unix

package sqlite

import (
	"errors"
	"syscall"
)

// isReadOnlyFS reports EROFS.
func isReadOnlyFS(err error) bool { return errors.Is(err, syscall.EROFS) }
