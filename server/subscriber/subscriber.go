// Package subscriber handles the example.Message events the server
// subscribes to.
package subscriber

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

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

// Recorder logs and counts the events it handles. The zero value is ready
// for use, and Handle is safe for concurrent use.
type Recorder struct {
	count atomic.Int64
}

// Handle records msg: it logs one line with ReceivedMarker, the quoted say
// text and the message's go-micro headers, and counts it. It never fails,
// so the broker may acknowledge the event.
func (r *Recorder) Handle(ctx context.Context, msg *example.Message) error {
	n := r.count.Add(1)
	md, _ := metadata.FromContext(ctx)
	logger.Infof("%s %q (#%d%s)", ReceivedMarker, msg.GetSay(), n, formatHeaders(md))
	return nil
}

// Count returns the number of events handled so far.
func (r *Recorder) Count() int64 {
	return r.count.Load()
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
	return b.String()
}
