//go:build !linux

package deploy_test

import "syscall"

// procAttr puts a proxy in its own process group; Pdeathsig is Linux-only.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
