// Package e2e tests the POC end to end: the real binaries, built from this
// module, against a real etcd and a real Azurite, each started on free
// loopback ports for the test and stopped after it.
package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Bounds of the waits below. Generous: they only matter when something is
// broken, and a loaded CI machine must not turn slowness into failures.
const (
	startTimeout  = 60 * time.Second // server up and registered
	clientTimeout = 30 * time.Second // one client run
	eventTimeout  = 30 * time.Second // a published event reaches the subscriber
	stopTimeout   = 60 * time.Second // graceful stop
)

// stack is one test's etcd, Azurite and binaries.
type stack struct {
	t       *testing.T
	etcd    *testenv.Etcd
	azurite *testenv.Azurite
	bin     string
	service string // the server's registered name, unique per test
	// environment is what every binary gets: how to reach and
	// authenticate to the test's Azurite.
	environment []string
}

// newStack starts a stack whose binaries reach its Azurite with the
// emulator's connection string.
func newStack(t *testing.T) *stack {
	t.Helper()
	s := newStackOn(t, testenv.StartAzurite(t))
	s.environment = []string{"AZURE_STORAGE_CONNECTION_STRING=" + s.azurite.ConnectionString()}
	return s
}

func newStackOn(t *testing.T, azurite *testenv.Azurite) *stack {
	t.Helper()
	return &stack{
		t:       t,
		bin:     testenv.BuildBinaries(t),
		etcd:    testenv.StartEtcd(t),
		azurite: azurite,
		service: "poc.e2e." + strings.ToLower(strings.NewReplacer("/", ".", "_", "-").Replace(t.Name())),
	}
}

// env is what every binary gets: the test's Azurite. The registry comes
// from flags (see args), which win over any MICRO_* variable the developer
// has set.
func (s *stack) env() []string { return s.environment }

// args prefixes a binary's own arguments with the test's registry.
func (s *stack) args(own ...string) []string {
	return append([]string{"--registry=etcd", "--registry_address=" + s.etcd.Endpoint()}, own...)
}

// startServer starts the server on a free loopback port and waits until
// it has registered and subscribed.
func (s *stack) startServer(own ...string) *testenv.Process {
	s.t.Helper()
	args := s.args(append([]string{"--server_name=" + s.service, "--server_address=127.0.0.1:0"}, own...)...)
	p := testenv.StartProcess(s.t, "server", s.bin+"/server", args, s.env())
	p.WaitForOutput(s.t, "Subscribing to topic", startTimeout)
	return p
}

// run runs a client to completion and returns its exit code.
func (s *stack) run(name string, own ...string) (*testenv.Process, int) {
	s.t.Helper()
	p := testenv.StartProcess(s.t, name, s.bin+"/"+name, s.args(own...), s.env())
	code, err := p.Wait(clientTimeout)
	if err != nil {
		s.t.Fatalf("%s %v: %v\n%s", name, own, err, p.Output())
	}
	return p, code
}

// waitReceived waits until server has logged the events "<say> #1" to
// "<say> #n" that client-azqueue-pub --say=<say> publishes.
func waitReceived(t *testing.T, server *testenv.Process, say string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		server.WaitForOutput(t, fmt.Sprintf("received event %q", fmt.Sprintf("%s #%d", say, i)), eventTimeout)
	}
}

// stopServer stops server with SIGTERM, as docker-compose down and
// Kubernetes do, and checks that it exited 0 after handling exactly
// events events.
func stopServer(t *testing.T, server *testenv.Process, events int) {
	t.Helper()
	if err := server.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := server.Wait(stopTimeout); err != nil || code != 0 {
		t.Fatalf("server after SIGTERM: exit %d, %v\n%s", code, err, server.Output())
	}
	if want := fmt.Sprintf("stopped: received %d events", events); !strings.Contains(server.Output(), want) {
		t.Errorf("server log lacks %q (each event exactly once):\n%s", want, server.Output())
	}
	assertClean(t, "server", server)
}

// registryKeys lists the server's entries under go-micro's etcd prefix.
func (s *stack) registryKeys() []string {
	return s.etcd.Keys(s.t, "/micro/registry/"+s.service+"/")
}

// assertClean fails if a process printed a panic or a stack trace.
func assertClean(t *testing.T, name string, p *testenv.Process) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "runtime error"} {
		if strings.Contains(p.Output(), bad) {
			t.Errorf("%s printed %q:\n%s", name, bad, p.Output())
		}
	}
}

func TestServerRegistersInEtcdAndDeregistersOnSIGTERM(t *testing.T) {
	s := newStack(t)
	server := s.startServer()
	testenv.WaitFor(t, startTimeout, "the server's node in etcd", func() bool { return len(s.registryKeys()) == 1 })

	if err := server.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := server.Wait(stopTimeout)
	if err != nil || code != 0 {
		t.Fatalf("server after SIGTERM: exit %d, %v\n%s", code, err, server.Output())
	}
	if keys := s.registryKeys(); len(keys) != 0 {
		t.Errorf("registry entries left after a graceful stop: %v", keys)
	}
	for _, want := range []string{"Deregistering node", "azqueue: disconnected from", "stopped: received 0 events"} {
		if !strings.Contains(server.Output(), want) {
			t.Errorf("server log lacks %q", want)
		}
	}
	assertClean(t, "server", server)
}

func TestClientsTalkToTheServer(t *testing.T) {
	s := newStack(t)
	s.startServer()
	tests := []struct {
		name   string
		client string
		args   []string
		want   []string
	}{
		{"unary call and lock-step pingpong", "client-pingpong", []string{"--service=" + s.service, "--name=Gopher", "--rounds=7"},
			[]string{"greeting: Hello Gopher\n", "stroke 6 rtt ", "pingpong: 7/7 strokes echoed"}},
		{"server stream and full-duplex pingpong", "client-stream", []string{"--service=" + s.service, "--count=50", "--duplex", "--strokes=300"},
			[]string{"stream: received 50/50 in ", "duplex: 300/300 strokes in order in "}},
		{"empty stream", "client-stream", []string{"--service=" + s.service, "--count=0"},
			[]string{"stream: received 0/0 in "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, code := s.run(tt.client, tt.args...)
			if code != 0 {
				t.Fatalf("%s exited %d:\n%s", tt.client, code, p.Output())
			}
			for _, want := range tt.want {
				if !strings.Contains(p.Stdout(), want) {
					t.Errorf("%s stdout lacks %q:\n%s", tt.client, want, p.Stdout())
				}
			}
			assertClean(t, tt.client, p)
		})
	}
}

func TestPublishedEventsReachTheSubscriber(t *testing.T) {
	s := newStack(t)
	const events = 20
	say := "e2e " + t.Name()

	// Half the events go out before the server starts: the broker keeps
	// them in the topic's queue until a subscriber comes.
	p, code := s.run("client-azqueue-pub", "--count=10", "--interval=0", "--say="+say)
	if code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	server := s.startServer()
	p, code = s.run("client-azqueue-pub", "--count=10", "--interval=0", "--say="+say+" late")
	if code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	if !strings.Contains(p.Stdout(), `total: 10 events published to "example.events"`) {
		t.Errorf("publisher summary missing:\n%s", p.Stdout())
	}

	waitReceived(t, server, say, events/2)
	waitReceived(t, server, say+" late", events/2)
	stopServer(t, server, events)
}

func TestClientsFailFastWhenTheServerIsDown(t *testing.T) {
	s := newStack(t) // etcd is up, but no server has registered
	for _, client := range []string{"client-pingpong", "client-stream"} {
		t.Run(client, func(t *testing.T) {
			start := time.Now()
			p, code := s.run(client, "--service="+s.service, "--timeout=5s")
			if code == 0 {
				t.Fatalf("%s succeeded without a server:\n%s", client, p.Output())
			}
			if elapsed := time.Since(start); elapsed > 15*time.Second {
				t.Errorf("%s took %s to fail", client, elapsed)
			}
			if want := fmt.Sprintf("service %q is not registered", s.service); !strings.Contains(p.Stderr(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, p.Stderr())
			}
			if lines := strings.Count(strings.TrimSpace(p.Stderr()), "\n") + 1; lines != 1 {
				t.Errorf("stderr has %d lines, want one clear line:\n%s", lines, p.Stderr())
			}
			assertClean(t, client, p)
		})
	}
}

func TestStreamRejectsBadCounts(t *testing.T) {
	s := newStack(t)
	s.startServer("--stream_max_count=1000")
	for _, count := range []string{"-1", "1001"} {
		t.Run(count, func(t *testing.T) {
			p, code := s.run("client-stream", "--service="+s.service, "--count="+count)
			if code == 0 {
				t.Fatalf("client-stream --count=%s succeeded:\n%s", count, p.Output())
			}
			if want := "out of range: it must be between 0 and 1000"; !strings.Contains(p.Stderr(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, p.Stderr())
			}
			assertClean(t, "client-stream", p)
		})
	}
	p, code := s.run("client-stream", "--service="+s.service, "--count=1000")
	if code != 0 || !strings.Contains(p.Stdout(), "received 1000/1000") {
		t.Errorf("the maximum count itself must work: exit %d\n%s", code, p.Output())
	}
}

func TestEveryBinaryHasHelpAndRejectsBadFlags(t *testing.T) {
	bin := testenv.BuildBinaries(t)
	tests := []struct {
		binary string
		flags  []string // own flags --help must list
	}{
		{"server", []string{"--topic", "--stream_max_count", "--max_message_size", "--fail_events_matching", "--subscriber_queue", "--shutdown_timeout", "--registry", "--broker", "--server_name", "--server_advertise", "--version"}},
		{"client-pingpong", []string{"--service", "--timeout", "--wait", "--name", "--rounds", "--registry_address", "--version"}},
		{"client-stream", []string{"--service", "--timeout", "--wait", "--count", "--duplex", "--strokes", "--version"}},
		{"client-azqueue-pub", []string{"--topic", "--say", "--interval", "--count", "--timeout", "--wait", "--broker", "--version"}},
		{"requeue-poison", []string{"--topic", "--group", "--max", "--timeout", "--wait", "--broker", "--version"}},
	}
	for _, tt := range tests {
		t.Run(tt.binary, func(t *testing.T) {
			help := testenv.StartProcess(t, tt.binary, bin+"/"+tt.binary, []string{"--help"}, nil)
			if code, err := help.Wait(clientTimeout); err != nil || code != 0 {
				t.Fatalf("--help: exit %d, %v\n%s", code, err, help.Output())
			}
			for _, flag := range tt.flags {
				if !strings.Contains(help.Output(), flag) {
					t.Errorf("--help does not list %s", flag)
				}
			}

			bad := testenv.StartProcess(t, tt.binary, bin+"/"+tt.binary, []string{"--no-such-flag"}, nil)
			code, err := bad.Wait(clientTimeout)
			if err != nil || code == 0 {
				t.Fatalf("--no-such-flag: exit %d, %v", code, err)
			}
			if !strings.Contains(bad.Output(), "flag provided but not defined") || !strings.Contains(bad.Output(), "USAGE") {
				t.Errorf("--no-such-flag: want the error and the usage:\n%s", bad.Output())
			}
			assertClean(t, tt.binary, bad)
		})
	}
}
