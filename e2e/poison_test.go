package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// TestPoisonedEventsGoBackWithRequeuePoison runs a service owner's repair:
// a server whose handler fails every event of a kind (--fail_events_matching)
// poisons them after AZQUEUE_MAX_DEQUEUE_COUNT=1 delivery; once a server
// without the fault runs, requeue-poison moves them back and that server
// handles each of them once.
func TestPoisonedEventsGoBackWithRequeuePoison(t *testing.T) {
	s := newStack(t)
	const events = 3
	say := "requeue " + t.Name()
	env := append(s.env(), "AZQUEUE_MAX_DEQUEUE_COUNT=1", "AZQUEUE_RETRY_MIN=100ms", "AZQUEUE_RETRY_MAX=200ms", "AZQUEUE_POLL_MAX=500ms")
	start := func(name string, own ...string) *testenv.Process {
		args := s.args(append([]string{"--server_name=" + s.service, "--server_address=127.0.0.1:0"}, own...)...)
		p := testenv.StartProcess(t, name, s.bin+"/server", args, env)
		p.WaitForOutput(t, "Subscribing to topic", startTimeout)
		return p
	}
	stop := func(p *testenv.Process) {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := p.Wait(stopTimeout); err != nil || code != 0 {
			t.Fatalf("server after SIGTERM: exit %d, %v\n%s", code, err, p.Output())
		}
		assertClean(t, "server", p)
	}

	failing := start("failing server", "--fail_events_matching="+say)
	if p, code := s.run("client-azqueue-pub", fmt.Sprintf("--count=%d", events), "--interval=0", "--say="+say); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	testenv.WaitFor(t, eventTimeout, fmt.Sprintf("%d events moved to the poison queue", events), func() bool {
		return strings.Count(failing.Output(), "to poison queue") == events
	})
	stop(failing)

	fixed := start("fixed server")
	p, code := s.run("requeue-poison")
	if code != 0 {
		t.Fatalf("requeue-poison exited %d:\n%s", code, p.Output())
	}
	if want := fmt.Sprintf("requeued %d messages from ", events); !strings.Contains(p.Stdout(), want) || !strings.Contains(p.Stdout(), `-poison" to "`) {
		t.Errorf("requeue-poison printed %q, want %q and the two queues", p.Stdout(), want)
	}
	assertClean(t, "requeue-poison", p)
	waitReceived(t, fixed, say, events)
	stop(fixed)
	if want := fmt.Sprintf("stopped: received %d events", events); !strings.Contains(fixed.Output(), want) {
		t.Errorf("the fixed server's log lacks %q (each requeued event exactly once)", want)
	}

	// Nothing left: a second run moves nothing and succeeds.
	if p, code := s.run("requeue-poison"); code != 0 || !strings.Contains(p.Stdout(), "requeued 0 messages") {
		t.Errorf("second requeue-poison: exit %d\n%s", code, p.Output())
	}
}
