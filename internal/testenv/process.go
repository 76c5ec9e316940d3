package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// pipeDrainDelay bounds how long Wait keeps reading output after the
	// process exited, in case a grandchild still holds its stdout or stderr.
	pipeDrainDelay = 2 * time.Second
	// killWaitTimeout bounds the wait for a process to exit after SIGKILL.
	killWaitTimeout = 10 * time.Second
	// outputPollInterval is how often WaitForOutput looks at the output.
	outputPollInterval = 10 * time.Millisecond
	// failureLogBytes bounds how much output a failed test's log shows per process.
	failureLogBytes = 64 << 10
)

// Process is a real program started by a test. Its stdout and stderr are
// captured, it runs in its own process group, and the test's cleanup kills
// the whole group, so nothing it started survives the test.
type Process struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd

	combined outputBuffer
	stdout   outputBuffer
	stderr   outputBuffer

	exited  chan struct{} // closed once the process has exited and its output is read
	waitErr error         // cmd.Wait's result; read only after exited is closed
}

// StartProcess starts the program at path with args as a child of the test,
// named name in messages. env is added to the test's own environment (a later
// entry wins over an earlier one with the same key). It fails the test if the
// program cannot be started. The test's cleanup kills the process group if it
// is still running and, if the test failed, logs the process's output.
func StartProcess(t testing.TB, name, path string, args []string, env []string) *Process {
	t.Helper()
	return startProcess(t, name, path, args, append(os.Environ(), env...))
}

// startProcess is StartProcess with the child's whole environment given.
func startProcess(t testing.TB, name, path string, args []string, environ []string) *Process {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = environ
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = pipeDrainDelay
	p := &Process{t: t, name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout = io.MultiWriter(&p.combined, &p.stdout)
	cmd.Stderr = io.MultiWriter(&p.combined, &p.stderr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s (%s %s): %v", name, path, strings.Join(args, " "), err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("testenv: output of %s (pid %d, %s):\n%s", name, p.Pid(), p.state(), lastBytes(p.Output(), failureLogBytes))
		}
	})
	return p
}

// Pid returns the process id, which is also the id of its process group.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns the process's stdout and stderr so far, interleaved in the
// order they arrived.
func (p *Process) Output() string { return p.combined.String() }

// OutputFrom returns the part of Output after its first offset bytes: a
// reader following a long output takes only what is new.
func (p *Process) OutputFrom(offset int) string { return p.combined.from(offset) }

// Stdout returns what the process wrote to its standard output so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the process wrote to its standard error so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// WaitForOutput waits until the process's output contains substring. It
// fails the test, showing the output so far, if timeout passes first or the
// process exits without printing it.
func (p *Process) WaitForOutput(t testing.TB, substring string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	ticker := time.NewTicker(outputPollInterval)
	defer ticker.Stop()
	for {
		if strings.Contains(p.Output(), substring) {
			return
		}
		select {
		case <-p.exited:
			if strings.Contains(p.Output(), substring) {
				return
			}
			t.Fatalf("testenv: wait for %s to print %q: it exited first (%s); output:\n%s", p.name, substring, p.state(), Tail(p.Output(), logTailLines))
		case <-deadline.C:
			t.Fatalf("testenv: wait for %s to print %q: not printed within %v; output so far:\n%s", p.name, substring, timeout, Tail(p.Output(), logTailLines))
		case <-ticker.C:
		}
	}
}

// Signal sends sig to the process (not to its whole group), for example
// syscall.SIGTERM to test a graceful shutdown.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("signal %s (pid %d) with %v: %w", p.name, p.Pid(), sig, os.ErrProcessDone)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s (pid %d) with %v: %w", p.name, p.Pid(), sig, err)
	}
	return nil
}

// ErrStillRunning is returned by Wait when the process did not exit in time.
var ErrStillRunning = errors.New("process still running")

// Wait waits at most timeout for the process to exit and returns its exit
// code, or -1 if a signal ended it. A non-zero exit code is not an error:
// err is ErrStillRunning (wrapped) if the process is still running, and
// otherwise reports only a failure to wait for it or to read its output.
func (p *Process) Wait(timeout time.Duration) (exitCode int, err error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		return -1, fmt.Errorf("wait for %s (pid %d) to exit within %v: %w", p.name, p.Pid(), timeout, ErrStillRunning)
	}
	exitCode = p.cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &exitErr) {
		return exitCode, fmt.Errorf("wait for %s (pid %d): %w", p.name, p.Pid(), p.waitErr)
	}
	return exitCode, nil
}

// Kill sends SIGKILL to the process's whole group and waits (bounded) for
// the process to exit. Calling it again, or after the process exited, is
// harmless.
func (p *Process) Kill() {
	// The group id stays reserved while any member is alive, so this reaches
	// only our processes, including children of an exited leader.
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.t.Errorf("testenv: kill process group of %s (pid %d): %v", p.name, p.Pid(), err)
	}
	select {
	case <-p.exited:
	case <-time.After(killWaitTimeout):
		p.t.Errorf("testenv: %s (pid %d) still running %v after SIGKILL", p.name, p.Pid(), killWaitTimeout)
	}
}

// stopGracefully sends p SIGTERM, waits stopTimeout for it to exit, then
// kills its process group. A nil or exited process is left alone.
func stopGracefully(t testing.TB, p *Process) {
	t.Helper()
	if p == nil || p.Exited() {
		return
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("testenv: stop %s: %v", p.name, err)
	}
	if _, err := p.Wait(stopTimeout); err != nil {
		t.Logf("testenv: stop %s: %v; killing it", p.name, err)
	}
	p.Kill()
}

// state describes whether and how the process ended.
func (p *Process) state() string {
	if !p.Exited() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// lastBytes returns at most the last n bytes of s, saying if it cut some.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("... (%d earlier bytes omitted)\n%s", len(s)-n, s[len(s)-n:])
}
