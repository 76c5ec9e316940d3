// Package subscriber handles the example.Message events the server
// subscribes to.
package subscriber

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/micro/go-micro/v2/logger"
	"github.com/micro/go-micro/v2/metadata"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// ReceivedMarker starts the log line written for every event received.
// End-to-end tests grep the server's output for it, followed by the quoted
// say text, so it must not change casually.
const ReceivedMarker = "received event"

// loggedHeaders are the go-micro message headers worth a place in the log
// line, in the order they are written.
var loggedHeaders = []string{"Micro-Id", "Micro-Topic", "Micro-From-Service"}

// DeliveryHeader is the header in which the azqueue broker counts the
// deliveries of a message. The log line shows it only for a redelivery
// (a count above 1), which is what at-least-once delivery looks like after
// a crash, a handler failure or a graceful stop that handed messages back.
const DeliveryHeader = "Azqueue-Dequeue-Count"

// ErrInjected is what Handle returns for the events FailMatching selects.
var ErrInjected = errors.New("fault injection")

// Recorder logs and counts the events it handles. The zero value is ready
// for use, and Handle is safe for concurrent use.
type Recorder struct {
	// FailMatching, when not empty, makes Handle fail every event whose
	// say text contains it, without logging or counting it: a fault
	// injection switch that shows, in a demo or a test of the real server,
	// how the broker retries a failing event and finally moves it to its
	// poison queue. Set it before the first Handle.
	FailMatching string
	// Delay, when positive, makes Handle spend that long on every event
	// before it logs and counts it: a fault injection switch for a slow
	// handler, whose message's lease the broker must keep renewing. Set it
	// before the first Handle.
	Delay time.Duration

	count  atomic.Int64
	failed atomic.Int64
}

// Handle records msg: it logs one line with ReceivedMarker, the quoted say
// text and the message's go-micro headers (and its delivery count if it is
// a redelivery), and counts it, after Delay. It fails only for the events
// FailMatching selects (an error wrapping ErrInjected), or when ctx ends
// during Delay, so the broker may acknowledge every other event.
func (r *Recorder) Handle(ctx context.Context, msg *example.Message) error {
	if r.Delay > 0 {
		timer := time.NewTimer(r.Delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("handle event %q: %w", shortened(msg.GetSay(), 200), ctx.Err())
		}
	}
	if r.FailMatching != "" && strings.Contains(msg.GetSay(), r.FailMatching) {
		r.failed.Add(1)
		return fmt.Errorf("%w: event %q contains %q", ErrInjected, shortened(msg.GetSay(), 200), r.FailMatching)
	}
	n := r.count.Add(1)
	md, _ := metadata.FromContext(ctx)
	logger.Infof("%s %q (#%d%s)", ReceivedMarker, msg.GetSay(), n, formatHeaders(md))
	return nil
}

// Count returns the number of events handled so far.
func (r *Recorder) Count() int64 {
	return r.count.Load()
}

// Failed returns the number of times Handle failed an event on purpose
// (see FailMatching); a redelivered event counts again.
func (r *Recorder) Failed() int64 {
	return r.failed.Load()
}

// shortened cuts s to at most n bytes for an error message.
func shortened(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// formatHeaders returns the loggedHeaders present in md as ", key=value"
// pairs; md may be nil.
func formatHeaders(md metadata.Metadata) string {
	var b strings.Builder
	for _, key := range loggedHeaders {
		if v, ok := md.Get(key); ok && v != "" {
			fmt.Fprintf(&b, ", %s=%s", key, v)
		}
	}
	if v, ok := md.Get(DeliveryHeader); ok && v != "" && v != "1" {
		fmt.Fprintf(&b, ", %s=%s", DeliveryHeader, v)
	}
	return b.String()
}
