package subscriber

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/logger"
	"github.com/micro/go-micro/v2/metadata"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

func TestRecorderHandle(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		say  string
		// wantLine is what the log line must contain.
		wantLine []string
		// notWant is what it must not contain.
		notWant []string
	}{
		{
			name: "with go-micro headers",
			ctx: metadata.NewContext(context.Background(), metadata.Metadata{
				"Micro-Id":           "id-1",
				"Micro-Topic":        "example.events",
				"Micro-From-Service": "poc.client-azqueue-pub",
				"Unrelated":          "x",
			}),
			say: "hello #1",
			wantLine: []string{
				`received event "hello #1" (#1`,
				"Micro-Id=id-1", "Micro-Topic=example.events", "Micro-From-Service=poc.client-azqueue-pub",
			},
			notWant: []string{"Unrelated"},
		},
		{
			name: "first delivery by the azqueue broker",
			ctx: metadata.NewContext(context.Background(), metadata.Metadata{
				"Micro-Id": "id-2", "Azqueue-Dequeue-Count": "1",
			}),
			say:      "hello #3",
			wantLine: []string{`received event "hello #3" (#1, Micro-Id=id-2)`},
		},
		{
			name: "redelivery by the azqueue broker",
			ctx: metadata.NewContext(context.Background(), metadata.Metadata{
				"Micro-Id": "id-3", "Azqueue-Dequeue-Count": "3",
			}),
			say:      "hello #4",
			wantLine: []string{`received event "hello #4" (#1, Micro-Id=id-3, Azqueue-Dequeue-Count=3)`},
		},
		{
			name:     "without metadata",
			ctx:      context.Background(),
			say:      "hello #2",
			wantLine: []string{`received event "hello #2" (#1)`},
		},
		{
			name:     "empty metadata and say",
			ctx:      metadata.NewContext(context.Background(), nil),
			wantLine: []string{`received event "" (#1)`},
		},
		{
			name:     "say needing quotes",
			ctx:      context.Background(),
			say:      "two\nlines \"quoted\"",
			wantLine: []string{`received event "two\nlines \"quoted\""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := captureLog(t)
			var r Recorder

			if err := r.Handle(tt.ctx, &example.Message{Say: tt.say}); err != nil {
				t.Fatalf("Handle() error = %v", err)
			}

			if got := r.Count(); got != 1 {
				t.Errorf("Count() = %d, want 1", got)
			}
			lines := log.lines()
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1: %q", len(lines), lines)
			}
			for _, want := range tt.wantLine {
				if !strings.Contains(lines[0], want) {
					t.Errorf("log line %q does not contain %q", lines[0], want)
				}
			}
			for _, unwanted := range tt.notWant {
				if strings.Contains(lines[0], unwanted) {
					t.Errorf("log line %q contains %q", lines[0], unwanted)
				}
			}
		})
	}
}

func TestRecorderFailsTheEventsFailMatchingSelects(t *testing.T) {
	log := captureLog(t)
	r := Recorder{FailMatching: "poison"}

	err := r.Handle(context.Background(), &example.Message{Say: "a poison pill #1"})
	if !errors.Is(err, ErrInjected) {
		t.Fatalf("Handle(matching event) error = %v, want ErrInjected", err)
	}
	if want := `event "a poison pill #1" contains "poison"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if err := r.Handle(context.Background(), &example.Message{Say: "a healthy event #2"}); err != nil {
		t.Fatalf("Handle(other event) error = %v", err)
	}
	if r.Count() != 1 || r.Failed() != 1 {
		t.Errorf("Count() = %d, Failed() = %d, want 1 and 1", r.Count(), r.Failed())
	}
	if lines := log.lines(); len(lines) != 1 || !strings.Contains(lines[0], `received event "a healthy event #2"`) {
		t.Errorf("want only the healthy event logged as received, got %q", lines)
	}
	long := strings.Repeat("poison ", 100)
	if err := r.Handle(context.Background(), &example.Message{Say: long}); err == nil || len(err.Error()) > 300 {
		t.Errorf("error for a long event text should be shortened, got %d bytes: %v", len(fmt.Sprint(err)), err)
	}
}

func TestRecorderDelaySlowsEveryEventAndEndsWithItsContext(t *testing.T) {
	log := captureLog(t)
	const delay = 100 * time.Millisecond
	r := Recorder{Delay: delay}

	start := time.Now()
	if err := r.Handle(context.Background(), &example.Message{Say: "slow #1"}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("Handle took %s, want at least Delay (%s)", took, delay)
	}
	if lines := log.lines(); len(lines) != 1 || r.Count() != 1 {
		t.Errorf("after one slow event: Count() = %d, log %q; want it handled once", r.Count(), lines)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Handle(ctx, &example.Message{Say: "abandoned #2"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Handle with an ended context: %v, want context.Canceled", err)
	}
	if r.Count() != 1 {
		t.Errorf("Count() = %d after an abandoned event, want 1", r.Count())
	}
}

func TestRecorderCountsConcurrentEvents(t *testing.T) {
	const events = 200
	log := captureLog(t)
	var r Recorder

	var wg sync.WaitGroup
	for i := range events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Handle(context.Background(), &example.Message{Say: fmt.Sprintf("event %d", i)})
		}()
	}
	wg.Wait()

	if got := r.Count(); got != events {
		t.Errorf("Count() = %d, want %d", got, events)
	}
	if got := len(log.lines()); got != events {
		t.Errorf("logged %d lines, want %d", got, events)
	}
}

// recordingLogger is a go-micro logger keeping the lines logged.
type recordingLogger struct {
	mu     sync.Mutex
	logged []string
}

func (l *recordingLogger) Init(...logger.Option) error { return nil }
func (l *recordingLogger) Options() logger.Options {
	return logger.Options{Level: logger.TraceLevel}
}
func (l *recordingLogger) Fields(map[string]interface{}) logger.Logger { return l }
func (l *recordingLogger) String() string                              { return "recording" }
func (l *recordingLogger) Log(level logger.Level, v ...interface{}) {
	l.Logf(level, "%s", fmt.Sprint(v...))
}
func (l *recordingLogger) Logf(level logger.Level, format string, v ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logged = append(l.logged, level.String()+" "+fmt.Sprintf(format, v...))
}

func (l *recordingLogger) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.logged...)
}

// captureLog makes go-micro's default logger record into the returned
// logger for the duration of the test.
func captureLog(t *testing.T) *recordingLogger {
	t.Helper()
	saved := logger.DefaultLogger
	l := &recordingLogger{}
	logger.DefaultLogger = l
	t.Cleanup(func() { logger.DefaultLogger = saved })
	return l
}
