package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// start starts a binary of the stack with the test's registry and
// Azurite, without waiting for it.
func (s *stack) start(name string, own ...string) *testenv.Process {
	s.t.Helper()
	return testenv.StartProcess(s.t, name, s.bin+"/"+name, s.args(own...), s.env())
}

func TestClientsWaitForTheServerToRegister(t *testing.T) {
	s := newStack(t)
	clients := map[string]*testenv.Process{
		"client-pingpong": s.start("client-pingpong", "--service="+s.service, "--wait=60s", "--rounds=3"),
		"client-stream":   s.start("client-stream", "--service="+s.service, "--wait=60s", "--count=5"),
	}
	waiting := fmt.Sprintf("waiting up to 1m0s (--wait) for service %q to register", s.service)
	for _, p := range clients {
		p.WaitForOutput(t, waiting, clientTimeout)
	}

	s.startServer()
	want := map[string]string{"client-pingpong": "pingpong: 3/3 strokes echoed", "client-stream": "stream: received 5/5 in "}
	for name, p := range clients {
		code, err := p.Wait(clientTimeout)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v\n%s", name, code, err, p.Output())
		}
		if !strings.Contains(p.Stdout(), want[name]) {
			t.Errorf("%s stdout lacks %q:\n%s", name, want[name], p.Stdout())
		}
		if registered := fmt.Sprintf("service %q registered after ", s.service); !strings.Contains(p.Stderr(), registered) {
			t.Errorf("%s stderr lacks %q:\n%s", name, registered, p.Stderr())
		}
		assertClean(t, name, p)
	}
}

func TestClientsStopWaitingAfterTheWait(t *testing.T) {
	s := newStack(t) // no server
	start := time.Now()
	p, code := s.run("client-pingpong", "--service="+s.service, "--wait=1s", "--timeout=5s")
	if code == 0 {
		t.Fatalf("client-pingpong succeeded without a server:\n%s", p.Output())
	}
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("client-pingpong took %s to give up a 1s wait", elapsed)
	}
	lines := strings.Split(strings.TrimSpace(p.Stderr()), "\n")
	if want := fmt.Sprintf("service %q is still not registered after waiting 1s", s.service); !strings.Contains(lines[len(lines)-1], want) {
		t.Errorf("last line of stderr lacks %q:\n%s", want, p.Stderr())
	}
	assertClean(t, "client-pingpong", p)
}

func TestPublisherWaitsForTheQueueService(t *testing.T) {
	s := newStack(t)
	s.azurite.Stop()
	say := "e2e " + t.Name()
	pub := s.start("client-azqueue-pub", "--wait=60s", "--count=2", "--interval=0", "--say="+say)
	pub.WaitForOutput(t, "waiting up to 1m0s (--wait) for broker azqueue to connect", clientTimeout)

	s.azurite.Start()
	code, err := pub.Wait(clientTimeout)
	if err != nil || code != 0 {
		t.Fatalf("client-azqueue-pub: exit %d, %v\n%s", code, err, pub.Output())
	}
	if want := `total: 2 events published to "example.events"`; !strings.Contains(pub.Stdout(), want) {
		t.Errorf("publisher stdout lacks %q:\n%s", want, pub.Stdout())
	}
	if !strings.Contains(pub.Stderr(), "broker azqueue connected after ") {
		t.Errorf("publisher stderr does not say it connected:\n%s", pub.Stderr())
	}
	assertClean(t, "client-azqueue-pub", pub)

	server := s.startServer()
	for i := 1; i <= 2; i++ {
		server.WaitForOutput(t, fmt.Sprintf("received event %q", fmt.Sprintf("%s #%d", say, i)), eventTimeout)
	}
}
