//go:build unix && !linux

package testenv

import "syscall"

// childProcAttr puts a child in its own process group, so cleanup can kill
// everything it started. Only Linux can also tie the child's life to the
// test binary's.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
