package deploy_test

import "syscall"

// procAttr puts a proxy in its own process group (so that cleanup can kill
// nginx's workers with it) and makes it die with the test binary, should
// the binary be killed (a timeout) before its cleanups run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
