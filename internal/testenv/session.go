package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Session is a testing.TB for what a whole test binary shares rather than
// one test owns: etcd, Azurite or a server started once for every benchmark
// of a package and stopped from TestMain. A resource started through a
// session lives until Close.
//
// Fatal, Fatalf, FailNow and the Skip methods end the function given to Run,
// which returns the failure as an error; call them only inside Run (the
// helpers of this package do). Error, Errorf and Log write to standard
// error and may be called anywhere, including from cleanups.
//
//	var shared = testenv.NewSession("bench")
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		shared.Close()
//		os.Exit(code)
//	}
type Session struct {
	// TB is always nil: embedding it only supplies testing.TB's private
	// method. Every method of the interface is implemented below.
	testing.TB

	name   string
	out    io.Writer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	errors   int // Fail calls, so Run can tell whether f reported any
	skipped  bool
	tempBase string
	tempSeq  int
	closed   bool
}

// NewSession returns a session named name (used in messages and temporary
// folder names) writing its log to standard error.
func NewSession(name string) *Session {
	ctx, cancel := context.WithCancel(context.Background())
	return &Session{name: name, out: os.Stderr, ctx: ctx, cancel: cancel}
}

// sessionStop is the panic value that ends a function run by Run.
type sessionStop struct {
	msg     string
	skipped bool
}

// ErrSessionSkipped is returned by Run when the function called a Skip
// method.
var ErrSessionSkipped = errors.New("testenv: session: skipped")

// Run calls f with the session and returns the failure that ended it, if
// any: f stops at the first Fatal, Fatalf, FailNow or Skip. Errors reported
// with Error or Errorf during f also make Run return an error.
func (s *Session) Run(f func(tb testing.TB)) (err error) {
	s.mu.Lock()
	errorsBefore := s.errors
	s.mu.Unlock()
	defer func() {
		r := recover()
		s.mu.Lock()
		reported := s.errors > errorsBefore
		s.mu.Unlock()
		switch stop, ok := r.(sessionStop); {
		case r == nil && reported:
			err = fmt.Errorf("testenv: session %s: errors were reported (see the log)", s.name)
		case r == nil:
		case ok && stop.skipped:
			err = fmt.Errorf("%w: %s", ErrSessionSkipped, stop.msg)
		case ok:
			err = errors.New(stop.msg)
		default:
			panic(r)
		}
	}()
	f(s)
	return nil
}

// Close runs the cleanups in reverse order of registration, then removes
// the session's temporary folders. Closing twice does nothing.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			break
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		f()
	}
	s.mu.Lock()
	base := s.tempBase
	s.mu.Unlock()
	if base != "" {
		if err := os.RemoveAll(base); err != nil {
			s.Logf("testenv: session %s: remove temporary folder: %v", s.name, err)
		}
	}
}

// Cleanup registers f to run at Close, after the cleanups registered later.
func (s *Session) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// Name returns the session's name.
func (s *Session) Name() string { return s.name }

// Helper does nothing: log lines carry no file and line.
func (s *Session) Helper() {}

// Log writes its arguments to the session's log.
func (s *Session) Log(args ...any) { s.write(fmt.Sprintln(args...)) }

// Logf writes a formatted line to the session's log.
func (s *Session) Logf(format string, args ...any) { s.write(fmt.Sprintf(format, args...) + "\n") }

// Error logs and marks the session failed.
func (s *Session) Error(args ...any) { s.Log(args...); s.Fail() }

// Errorf logs and marks the session failed.
func (s *Session) Errorf(format string, args ...any) { s.Logf(format, args...); s.Fail() }

// Fail marks the session failed.
func (s *Session) Fail() {
	s.mu.Lock()
	s.failed = true
	s.errors++
	s.mu.Unlock()
}

// Failed reports whether a failure was reported.
func (s *Session) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// FailNow marks the session failed and ends the function given to Run.
func (s *Session) FailNow() {
	s.Fail()
	panic(sessionStop{msg: fmt.Sprintf("testenv: session %s: FailNow", s.name)})
}

// Fatal logs, marks the session failed and ends the function given to Run.
func (s *Session) Fatal(args ...any) {
	s.Fail()
	panic(sessionStop{msg: fmt.Sprint(args...)})
}

// Fatalf logs, marks the session failed and ends the function given to Run.
func (s *Session) Fatalf(format string, args ...any) {
	s.Fail()
	panic(sessionStop{msg: fmt.Sprintf(format, args...)})
}

// Skip ends the function given to Run, which returns ErrSessionSkipped.
func (s *Session) Skip(args ...any) {
	s.markSkipped()
	panic(sessionStop{msg: fmt.Sprint(args...), skipped: true})
}

// Skipf ends the function given to Run, which returns ErrSessionSkipped.
func (s *Session) Skipf(format string, args ...any) {
	s.markSkipped()
	panic(sessionStop{msg: fmt.Sprintf(format, args...), skipped: true})
}

// SkipNow ends the function given to Run, which returns ErrSessionSkipped.
func (s *Session) SkipNow() {
	s.markSkipped()
	panic(sessionStop{msg: "SkipNow", skipped: true})
}

// Skipped reports whether a Skip method was called.
func (s *Session) Skipped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// TempDir returns a new folder removed by Close.
func (s *Session) TempDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tempBase == "" {
		base, err := os.MkdirTemp("", "testenv-session-"+s.name+"-")
		if err != nil {
			panic(sessionStop{msg: fmt.Sprintf("testenv: session %s: TempDir: %v", s.name, err)})
		}
		s.tempBase = base
	}
	s.tempSeq++
	dir := filepath.Join(s.tempBase, strconv.Itoa(s.tempSeq))
	if err := os.Mkdir(dir, 0o755); err != nil {
		panic(sessionStop{msg: fmt.Sprintf("testenv: session %s: TempDir: %v", s.name, err)})
	}
	return dir
}

// ArtifactDir returns a new folder removed by Close.
func (s *Session) ArtifactDir() string { return s.TempDir() }

// Setenv sets an environment variable until Close.
func (s *Session) Setenv(key, value string) {
	prev, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		s.Fatalf("testenv: session %s: Setenv %s: %v", s.name, key, err)
	}
	s.Cleanup(func() {
		if had {
			os.Setenv(key, prev)
		} else {
			os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory until Close.
func (s *Session) Chdir(dir string) {
	prev, err := os.Getwd()
	if err != nil {
		s.Fatalf("testenv: session %s: Chdir: %v", s.name, err)
	}
	if err := os.Chdir(dir); err != nil {
		s.Fatalf("testenv: session %s: Chdir: %v", s.name, err)
	}
	s.Cleanup(func() { os.Chdir(prev) })
}

// Attr logs a key and value.
func (s *Session) Attr(key, value string) { s.Logf("=== ATTR %s %v %v", s.name, key, value) }

// Context returns a context cancelled when Close starts.
func (s *Session) Context() context.Context { return s.ctx }

// Output returns the session's log writer.
func (s *Session) Output() io.Writer { return s.out }

func (s *Session) markSkipped() {
	s.mu.Lock()
	s.skipped = true
	s.mu.Unlock()
}

func (s *Session) write(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "%s: %s", s.name, line)
}
