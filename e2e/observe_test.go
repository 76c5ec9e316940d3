package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// monitorClient asks the server's monitoring endpoints; a short timeout,
// as a Kubernetes probe has.
var monitorClient = &http.Client{Timeout: 5 * time.Second}

// get returns the status and body of url, or status 0 when it did not
// answer.
func get(url string) (int, string) {
	resp, err := monitorClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitStatus waits until url answers status.
func waitStatus(t *testing.T, url string, status int, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, fmt.Sprintf("%s to answer %d", url, status), func() bool {
		got, _ := get(url)
		return got == status
	})
}

// scrape returns the metric families /metrics serves.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := get(base + "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// sum adds the values of a family's series whose labels include want.
func sum(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	total := 0.0
	for _, m := range families[name].GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(want)
}

// statsRequests matches the broker's own request count in the line it logs
// when it disconnects.
var statsRequests = regexp.MustCompile(`azqueue: disconnected from .* requests=(\d+)`)

// handleDelay is how long the server spends on every event: long enough
// for the test to stop it while a handler runs.
const handleDelay = 2 * time.Second

// TestServerExportsMetricsAndHealth runs the real server with
// --metrics_address against real etcd and Azurite. /healthz answers as
// soon as the server starts; /readyz is 503 while etcd is down (not
// registered), 200 once the server registered, and 503 again during its
// graceful stop. /metrics counts what happened: 5 events delivered and
// acked, one event failing on purpose delivered twice and then poisoned
// with reason max_deliveries, a lag sample per delivery, the RPC calls by
// endpoint, and requests by operation that add up to the broker's own
// count.
func TestServerExportsMetricsAndHealth(t *testing.T) {
	s := newStack(t)
	address := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + address
	s.etcd.Stop()

	args := s.args("--server_name="+s.service, "--server_address=127.0.0.1:0", "--metrics_address="+address,
		"--fail_events_matching=poison", "--handle_delay="+handleDelay.String())
	env := append(s.env(), "AZQUEUE_MAX_DEQUEUE_COUNT=2", "AZQUEUE_RETRY_MIN=100ms", "AZQUEUE_RETRY_MAX=200ms", "AZQUEUE_DEPTH_SAMPLE_INTERVAL=500ms")
	server := testenv.StartProcess(t, "server", s.bin+"/server", args, env)
	waitStatus(t, base+"/healthz", http.StatusOK, startTimeout)
	if status, body := get(base + "/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "not registered") {
		t.Errorf("/readyz with etcd down: %d %q, want 503 saying it is not registered", status, body)
	}
	s.etcd.Start()
	server.WaitForOutput(t, "Subscribing to topic", startTimeout)
	waitStatus(t, base+"/readyz", http.StatusOK, startTimeout)

	if p, code := s.run("client-azqueue-pub", "--count=5", "--interval=0", "--say=observed"); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	if p, code := s.run("client-azqueue-pub", "--count=1", "--say=poison"); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	if p, code := s.run("client-pingpong", "--service="+s.service, "--rounds=2"); code != 0 {
		t.Fatalf("client-pingpong exited %d:\n%s", code, p.Output())
	}
	waitReceived(t, server, "observed", 5)
	server.WaitForOutput(t, "moved message", eventTimeout)

	queue := map[string]string{"topic": "example.events"}
	var families map[string]*dto.MetricFamily
	testenv.WaitFor(t, eventTimeout, "the acks, the poisoning and an empty queue to show in /metrics", func() bool {
		families = scrape(t, base)
		return sum(families, "azqueue_acked_total", queue) == 5 && sum(families, "azqueue_poisoned_total", queue) == 1 &&
			len(families["azqueue_queue_depth_messages"].GetMetric()) > 0 && sum(families, "azqueue_queue_depth_messages", queue) == 0
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"azqueue_delivered_total", queue, 7},
		{"azqueue_acked_total", queue, 5},
		// The failing event: delivered twice, retried twice, poisoned at
		// its third dequeue, more than MaxDequeueCount 2, before any
		// handler sees it.
		{"azqueue_retried_total", queue, 2},
		{"azqueue_poisoned_total", map[string]string{"topic": "example.events", "reason": "max_deliveries"}, 1},
		{"azqueue_message_age_seconds", queue, 7},
		{"azqueue_handler_duration_seconds", map[string]string{"topic": "example.events", "outcome": "ok"}, 5},
		{"azqueue_handler_duration_seconds", map[string]string{"topic": "example.events", "outcome": "error"}, 2},
		{"micro_request_total", map[string]string{"micro_endpoint": "Example.Call", "micro_status": "success"}, 1},
		{"micro_request_total", map[string]string{"micro_endpoint": "Example.PingPong", "micro_status": "success"}, 1},
	} {
		if got := sum(families, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	scraped := sum(families, "azqueue_requests_total", nil)

	// A graceful stop with a handler running: /readyz is 503 while it
	// drains.
	if p, code := s.run("client-azqueue-pub", "--count=1", "--say=slow"); code != 0 {
		t.Fatalf("publisher exited %d:\n%s", code, p.Output())
	}
	testenv.WaitFor(t, eventTimeout, "the slow event to reach its handler", func() bool {
		return sum(scrape(t, base), "azqueue_delivered_total", queue) == 8
	})
	if err := server.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, stopTimeout, "/readyz to say it is stopping", func() bool {
		status, body := get(base + "/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "stopping")
	})
	if code, err := server.Wait(stopTimeout); err != nil || code != 0 {
		t.Fatalf("server after SIGTERM: exit %d, %v\n%s", code, err, server.Output())
	}
	m := statsRequests.FindStringSubmatch(server.Output())
	if m == nil {
		t.Fatalf("the server did not log the broker's stats at disconnect:\n%s", server.Output())
	}
	final, _ := strconv.ParseFloat(m[1], 64)
	// Between the scrape and the stop the server made a few more
	// requests: the slow event's delivery and ack, polls, depth samples.
	if scraped > final || final-scraped > 40 {
		t.Errorf("requests by operation in /metrics add up to %v; the broker counted %v at the end, want at most a few more", scraped, final)
	}
	assertClean(t, "server", server)
}
