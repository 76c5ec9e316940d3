package testenv

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

const (
	// readyTimeout bounds the wait for etcd or Azurite to answer after start.
	readyTimeout = 30 * time.Second
	// readyPollInterval is how often readiness is probed.
	readyPollInterval = 50 * time.Millisecond
	// probeTimeout bounds one readiness probe.
	probeTimeout = 2 * time.Second
	// stopTimeout bounds the graceful stop after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// maxPortAttempts bounds the restarts on new ports when a port
	// FreePort returned was taken by someone else before the server bound it.
	maxPortAttempts = 3
)

// errPortInUse marks a start that failed because a port was already taken.
var errPortInUse = errors.New("port already in use")

// probeClient is the HTTP client of readiness probes.
var probeClient = &http.Client{Timeout: probeTimeout}

// waitReady polls probe until it succeeds, p exits, or readyTimeout passes.
// The error says why it gave up and carries the last probe error.
func waitReady(p *Process, probe func() error) error {
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	ticker := time.NewTicker(readyPollInterval)
	defer ticker.Stop()
	for {
		lastErr := probe()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.exited:
			err := fmt.Errorf("%s exited (%s) before it was ready: %w", p.name, p.state(), lastErr)
			if looksLikePortInUse(p.Output()) {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		case <-deadline.C:
			return fmt.Errorf("%s not ready within %v: %w", p.name, readyTimeout, lastErr)
		case <-ticker.C:
		}
	}
}

// looksLikePortInUse reports whether a server's output says it could not
// bind its port: Go servers print "address already in use", Node ones EADDRINUSE.
func looksLikePortInUse(output string) bool {
	return strings.Contains(output, "address already in use") || strings.Contains(output, "EADDRINUSE")
}
