package redis_test

import "syscall"

// childProcAttr makes the test's redis-server die with the test binary,
// should the binary be killed (a timeout) before its cleanups run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
