//go:build docker

package compose

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// TestComposeDemo runs `docker-compose up` on the project's compose file,
// attached, as the README's "Run it in Docker" does, and checks every
// claim of that section in the real containers; then prints what `up`
// showed.
func TestComposeDemo(t *testing.T) {
	c := newProject(t, "poc-go-micro-demo")
	start := time.Now()
	up := c.Start(t, "docker-compose up", "up")

	// Every client exits 0, having printed what the README says.
	want, err := project.ClientOutputs()
	if err != nil {
		t.Fatal(err)
	}
	services := project.BuiltServices()
	for binary, lines := range want {
		service := services[binary]
		id := waitForContainer(t, c, service, upTimeout)
		state := waitForExit(t, service, id, clientsTimeout)
		logs := engine.Logs(t, id)
		if state.ExitCode != 0 {
			t.Fatalf("%s exited with code %d; its logs:\n%s", service, state.ExitCode, logs)
		}
		for _, line := range lines {
			if !strings.Contains(logs, line) {
				t.Errorf("%s's output lacks %q:\n%s", service, line, logs)
			}
		}
	}
	clientsDone := time.Since(start)

	// The server handled the events the publisher published.
	server := c.Container(t, services["server"])
	events, err := project.PublishedEvents()
	if err != nil {
		t.Fatal(err)
	}
	waitForLogs(t, server, fmt.Sprintf("the %d events", len(events)), logTimeout, func(logs string) bool {
		for _, event := range events {
			if !strings.Contains(logs, fmt.Sprintf("received event %q", event)) {
				return false
			}
		}
		return true
	})

	// Its node is registered in etcd, at the address the other containers
	// dial: asked from a container of the compose network.
	serviceName := env(t, "server", "MICRO_SERVER_NAME")
	registered := c.MustRun(t, upTimeout, "run", "--rm", "--no-deps", "-T", "--entrypoint", "/usr/local/bin/etcdctl", "etcd",
		"--endpoints=http://etcd:2379", "get", "--prefix", "/micro/registry/"+serviceName+"/")
	for _, w := range []string{"/micro/registry/" + serviceName + "/" + serviceName + "-", `"address":"` + env(t, "server", "MICRO_SERVER_ADVERTISE") + `"`} {
		if !strings.Contains(registered, w) {
			t.Errorf("etcd's /micro/registry/%s/ lacks %q:\n%s", serviceName, w, registered)
		}
	}
	// The server runs as the image's non-root user.
	if top := engine.MustDocker(t, "top", server, "-o", "pid,uid,comm"); !strings.Contains(top, "65532") {
		t.Errorf("the server's process does not run as uid 65532 (nonroot):\n%s", top)
	}

	// docker-compose stop: the server deregisters, drains the broker and
	// exits 0 within its grace period.
	grace, err := time.ParseDuration(project.Services["server"].StopGracePeriod)
	if err != nil {
		t.Fatalf("docker-compose.yml: server stop_grace_period: %v", err)
	}
	// Azurite's image declares its data folder a volume: down -v must
	// remove it, though it carries no project label.
	volumes := mountedVolumes(t, c.Container(t, "azurite"))
	if len(volumes) == 0 {
		t.Errorf("the azurite container mounts no volume (its image declares VOLUME /data)")
	}
	stopping := time.Now()
	c.MustRun(t, stopTimeout, "stop")
	state := engine.State(t, server)
	stopped := state.FinishedAt.Sub(stopping)
	if !state.Exited() || state.ExitCode != 0 || stopped > grace {
		t.Errorf("server after docker-compose stop: %s, exit code %d, %s after the stop (grace period %s); want exited, 0, within it", state.Status, state.ExitCode, stopped.Round(time.Millisecond), grace)
	}
	logs := engine.Logs(t, server)
	for _, w := range []string{
		"Deregistering node: " + serviceName + "-",
		"Unsubscribing from topic: " + env(t, "server", "POC_TOPIC"),
		"azqueue: disconnected from ",
		fmt.Sprintf("stopped: received %d events on topic %q", len(events), env(t, "server", "POC_TOPIC")),
	} {
		if !strings.Contains(logs, w) {
			t.Errorf("server's log lacks %q:\n%s", w, testenv.Tail(logs, 30))
		}
	}
	if code, err := up.Wait(stopTimeout); err != nil || code != 0 {
		t.Errorf("docker-compose up after stop: exit %d, %v", code, err)
	}

	// docker-compose down -v leaves nothing of the project behind.
	c.MustRun(t, downTimeout, "down", "--volumes")
	if left := c.Leftovers(t, volumes...); len(left) > 0 {
		t.Errorf("docker-compose down -v left %s", strings.Join(left, ", "))
	}

	fmt.Printf("\n---- docker-compose up (project %s) ----\n%s---- end of docker-compose up ----\n", c.Project(), up.Output())
	t.Logf("clients done %s after up; server stopped %s after the stop", clientsDone.Round(100*time.Millisecond), stopped.Round(time.Millisecond))
}

// mountedVolumes returns the names of the volumes container id mounts.
func mountedVolumes(t *testing.T, id string) []string {
	t.Helper()
	out := engine.MustDocker(t, "container", "inspect", "--format", `{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}`, id)
	return strings.Fields(out)
}
