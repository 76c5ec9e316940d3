package e2e

import (
	"context"
	"strings"
	"testing"

	sdk "github.com/Azure/azure-storage-queue-go/azqueue"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// queueNames lists the test Azurite's queues.
func (s *stack) queueNames() []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	resp, err := s.azurite.Service(s.t, sdk.PipelineOptions{}).ListQueuesSegment(ctx, sdk.Marker{}, sdk.ListQueuesSegmentOptions{})
	if err != nil {
		s.t.Fatalf("list queues: %v", err)
	}
	var names []string
	for _, q := range resp.QueueItems {
		names = append(names, q.Name)
	}
	return names
}

// TestNamedGroupGetsTheEventsPublishedBeforeIt runs the server in a named
// group (--subscriber_queue billing) after events were published with no
// subscriber at all: it handles them, and no queue is left behind that
// nobody reads (the unclaimed default queue is emptied into billing's and
// deleted), also after more events.
func TestNamedGroupGetsTheEventsPublishedBeforeIt(t *testing.T) {
	s := newStack(t)
	say := "groups " + t.Name()
	if p, code := s.run("client-azqueue-pub", "--count=5", "--interval=0", "--say="+say); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	// QueueCacheTTL 0 and PublishTimeout 1s: the emptied queue goes a
	// second after the claim rather than a minute.
	env := append(s.env(), "AZQUEUE_QUEUE_CACHE_TTL=0s", "AZQUEUE_PUBLISH_TIMEOUT=1s")
	args := s.args("--server_name="+s.service, "--server_address=127.0.0.1:0", "--subscriber_queue=billing")
	server := testenv.StartProcess(t, "server", s.bin+"/server", args, env)
	server.WaitForOutput(t, "Subscribing to topic", startTimeout)
	if p, code := s.run("client-azqueue-pub", "--count=5", "--interval=0", "--say="+say+" late"); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	waitReceived(t, server, say, 5)
	waitReceived(t, server, say+" late", 5)
	testenv.WaitFor(t, eventTimeout, "only billing's queue to be left", func() bool {
		names := s.queueNames()
		return len(names) == 1 && strings.Contains(names[0], "billing")
	})
	stopServer(t, server, 10)
}
