package testenv

import "syscall"

// childProcAttr puts a child in its own process group, so cleanup can kill
// everything it started, and has the kernel kill it if the test binary dies
// first (Pdeathsig fires when the thread that started the child exits; Go
// only ends threads of goroutines that exit while locked to them).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
