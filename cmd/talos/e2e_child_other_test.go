//go:build !linux

package main

import "syscall"

// childProcAttr: Pdeathsig is Linux-only; elsewhere the cleanups stop the
// helper processes.
func childProcAttr() *syscall.SysProcAttr { return nil }
