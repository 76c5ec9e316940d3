package azqueue

import (
	"fmt"
	"sync"
	"time"

	"github.com/micro/go-micro/v2/logger"
)

// throttledLog logs a recurring error at most once per interval, saying how
// many were suppressed in between, so an outage produces a few lines rather
// than one per poll.
type throttledLog struct {
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *throttledLog) errorf(format string, args ...interface{}) {
	t.mu.Lock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	suppressed := t.suppressed
	t.last, t.suppressed = now, 0
	t.mu.Unlock()

	msg := fmt.Sprintf(format, args...)
	if suppressed > 0 {
		msg += fmt.Sprintf(" (%d similar errors since the last report)", suppressed)
	}
	logger.Error(msg)
}

// recovered logs, once, that the condition behind the errors has passed.
func (t *throttledLog) recovered(format string, args ...interface{}) {
	t.mu.Lock()
	wasFailing := !t.last.IsZero()
	t.last, t.suppressed = time.Time{}, 0
	t.mu.Unlock()
	if wasFailing {
		logger.Infof(format, args...)
	}
}
