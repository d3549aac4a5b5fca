package main

import "errors"

// The exit codes of every command, listed in `talos --help`, so that a
// script can tell a negative answer from a broken call.
const (
	exitOK       = 0 // success
	exitNegative = 1 // a negative answer: invalid key, not found, pending migrations under --check
	exitUsage    = 2 // bad usage: unknown command or flag, bad arguments, invalid configuration
	exitServer   = 3 // the server, database or transport failed (unreachable, 5xx, timeout)
	exitAuth     = 4 // authentication or permission refused (401, 403, PERMISSION_DENIED)
)

// exitError carries the exit code of err to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit marks err with an exit code; nil stays nil.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// exitCodeOf is the code main exits with for err: the outermost withExit
// mark, exitUsage for usage errors, else exitNegative.
func exitCodeOf(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, new(usageError)):
		return exitUsage
	}
	return exitNegative
}
