package dockerenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// failureTailLines is how much of a failed command's output its error
// shows: enough for the failing step of an image build and the error
// BuildKit prints after it.
const failureTailLines = 60

// command is one program run to completion with a bounded duration.
type command struct {
	argv    []string
	env     []string  // the whole environment; nil inherits this process's
	dir     string    // working directory; "" is this process's
	stdin   io.Reader // nil reads nothing
	timeout time.Duration
}

// run runs c and returns its stdout and stderr, interleaved. A failure
// (a non-zero exit, a start that failed, the timeout) is an error that
// names the command and shows the end of its output.
func (c command) run() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdin = c.stdin
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	output := out.String()
	switch {
	case err == nil:
		return output, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return output, fmt.Errorf("%s: still running after %s, stopped; its output ended with:\n%s", c, c.timeout, testenv.Tail(output, failureTailLines))
	default:
		return output, fmt.Errorf("%s: %w; its output ended with:\n%s", c, err, testenv.Tail(output, failureTailLines))
	}
}

// String returns the command line, for messages.
func (c command) String() string { return strings.Join(c.argv, " ") }

// firstLine returns the first non-empty line of s, for one-line messages.
func firstLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}
