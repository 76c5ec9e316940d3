package testenv

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
)

// outputBuffer collects a process's output; writers and readers may run
// concurrently.
type outputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// from returns what was written after the first offset bytes, or "" if
// nothing was.
func (b *outputBuffer) from(offset int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if offset < 0 {
		offset = 0
	}
	if offset >= b.buf.Len() {
		return ""
	}
	return string(b.buf.Bytes()[offset:])
}

// logTailLines is how much of a process's output failure messages show.
const logTailLines = 40

// Tail returns the last n lines of s, saying how many lines it left out:
// what failure messages show of a long output.
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "(no output)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) <= n {
		return s
	}
	return "... (" + strconv.Itoa(len(lines)-n) + " earlier lines omitted)\n" + strings.Join(lines[len(lines)-n:], "\n")
}
