//go:build docker

package compose

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

const (
	// killTestEvents is how many events the publisher container publishes.
	killTestEvents = 200
	// killAfter is how many of them the server has handled when it is
	// killed: enough that it holds leases on messages, few enough that the
	// publisher is still publishing.
	killAfter = 30
	// redeliveryTimeout bounds the wait for every event after the restart:
	// messages the killed server held come back when their lease expires
	// (the broker's VisibilityTimeout, 30s).
	redeliveryTimeout = 3 * time.Minute
)

// TestServerKilledInItsContainerLosesNoEvent kills the server container
// with SIGKILL while a publisher container publishes killTestEvents events,
// starts it again, and checks that every event was handled, counted by
// their distinct texts.
func TestServerKilledInItsContainerLosesNoEvent(t *testing.T) {
	c := newProject(t, "poc-go-micro-kill")
	c.MustRun(t, upTimeout, "up", "--detach", "server")
	server := c.Container(t, "server")
	waitForLogs(t, server, "its subscription", logTimeout, containsString("Subscribing to topic"))

	say := fmt.Sprintf("kill test %d", time.Now().UnixNano())
	publisher := c.Start(t, "client-azqueue-pub", "run", "--rm", "--no-deps", "-T",
		"-e", "POC_COUNT="+strconv.Itoa(killTestEvents), "-e", "POC_INTERVAL=20ms", "-e", "POC_SAY="+say,
		"client-azqueue-pub")
	handled := handledEvents(say)

	waitForLogs(t, server, fmt.Sprintf("%d events", killAfter), logTimeout, func(logs string) bool {
		return len(handled(logs)) >= killAfter
	})
	if publisher.Exited() {
		t.Fatalf("the publisher finished before the server was killed, so the test proves nothing; its output:\n%s", publisher.Output())
	}
	engine.MustDocker(t, "kill", "--signal", "KILL", server)
	killed := time.Now()
	beforeKill := len(handled(engine.Logs(t, server)))
	if state := engine.State(t, server); !state.Exited() || state.ExitCode != 137 {
		t.Fatalf("server after docker kill: %s, exit code %d; want exited by SIGKILL (137)", state.Status, state.ExitCode)
	}
	c.MustRun(t, upTimeout, "start", "server")

	if code, err := publisher.Wait(clientsTimeout); err != nil || code != 0 {
		t.Fatalf("publisher: exit %d, %v; output:\n%s", code, err, publisher.Output())
	}
	if want := fmt.Sprintf("total: %d events published", killTestEvents); !containsString(want)(publisher.Output()) {
		t.Fatalf("publisher's output lacks %q:\n%s", want, publisher.Output())
	}
	logs := waitForLogs(t, server, fmt.Sprintf("all %d events", killTestEvents), redeliveryTimeout, func(logs string) bool {
		return len(handled(logs)) == killTestEvents
	})
	got := handled(logs)
	for n := 1; n <= killTestEvents; n++ {
		if got[n] == 0 {
			t.Errorf("event %q #%d was never handled", say, n)
		}
	}
	deliveries := 0
	for _, count := range got {
		deliveries += count
	}
	t.Logf("%d events published, %d handled before the SIGKILL, all %d handled %s after it (%d deliveries: %d redelivered)",
		killTestEvents, beforeKill, len(got), time.Since(killed).Round(100*time.Millisecond), deliveries, deliveries-len(got))
}

// handledEvents returns a function that counts, in a server's logs, how
// often each event of the publisher saying say was handled, by number.
func handledEvents(say string) func(logs string) map[int]int {
	line := regexp.MustCompile(`received event "` + regexp.QuoteMeta(say) + ` #(\d+)"`)
	return func(logs string) map[int]int {
		counts := make(map[int]int)
		for _, m := range line.FindAllStringSubmatch(logs, -1) {
			n, _ := strconv.Atoi(m[1])
			counts[n]++
		}
		return counts
	}
}
