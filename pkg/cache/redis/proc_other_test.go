//go:build !linux

package redis_test

import "syscall"

// childProcAttr is nil where there is no parent-death signal; the test's
// cleanup kills redis-server.
func childProcAttr() *syscall.SysProcAttr { return nil }
