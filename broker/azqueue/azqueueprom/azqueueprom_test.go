package azqueueprom

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
)

func TestObserverExportsWhatItIsToldLabelledByQueue(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	o, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	q := azqueue.Queue{Topic: "orders", Group: "billing", Name: "orders-billing"}
	o.Published(q)
	o.Published(q)
	o.Delivered(q, 1500*time.Millisecond, 1)
	o.Handled(q, 20*time.Millisecond, nil)
	o.Handled(q, 5*time.Millisecond, errors.New("boom"))
	o.Acked(q)
	o.Poisoned(q, azqueue.PoisonMaxDeliveries)
	o.Polled(q, 0)
	o.Polled(q, 3)
	o.Requested("enqueue", 201, "")
	o.Requested("dequeue", 503, "ServerBusy")
	o.Requested("dequeue", 0, "")
	o.Depth(q, 42)

	want := `
# HELP azqueue_published_total Messages enqueued, one per group queue of the topic.
# TYPE azqueue_published_total counter
azqueue_published_total{group="billing",queue="orders-billing",topic="orders"} 2
# HELP azqueue_poisoned_total Messages moved to the poison queue, by reason (max_deliveries, unreadable, permanent, undecodable).
# TYPE azqueue_poisoned_total counter
azqueue_poisoned_total{group="billing",queue="orders-billing",reason="max_deliveries",topic="orders"} 1
# HELP azqueue_empty_polls_total Dequeue requests answered with no message.
# TYPE azqueue_empty_polls_total counter
azqueue_empty_polls_total{group="billing",queue="orders-billing",topic="orders"} 1
# HELP azqueue_polls_total Dequeue requests that were answered.
# TYPE azqueue_polls_total counter
azqueue_polls_total{group="billing",queue="orders-billing",topic="orders"} 2
# HELP azqueue_request_errors_total Failed HTTP requests to the queue service, by operation and the service's error code (no_response when none came).
# TYPE azqueue_request_errors_total counter
azqueue_request_errors_total{code="ServerBusy",operation="dequeue"} 1
azqueue_request_errors_total{code="no_response",operation="dequeue"} 1
# HELP azqueue_requests_total HTTP requests to the queue service, by operation and the answer's status (0: no answer).
# TYPE azqueue_requests_total counter
azqueue_requests_total{operation="dequeue",status="0"} 1
azqueue_requests_total{operation="dequeue",status="503"} 1
azqueue_requests_total{operation="enqueue",status="201"} 1
# HELP azqueue_queue_depth_messages The service's approximate count of messages in the queue, invisible ones included, as last sampled (azqueue.DepthSampleInterval).
# TYPE azqueue_queue_depth_messages gauge
azqueue_queue_depth_messages{group="billing",queue="orders-billing",topic="orders"} 42
`
	names := []string{"azqueue_published_total", "azqueue_poisoned_total", "azqueue_empty_polls_total", "azqueue_polls_total",
		"azqueue_request_errors_total", "azqueue_requests_total", "azqueue_queue_depth_messages"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(o.handlerDuration); n != 2 {
		t.Errorf("%d handler duration series, want 2 (ok and error)", n)
	}
	if got := testutil.ToFloat64(o.acked.WithLabelValues("orders", "billing", "orders-billing")); got != 1 {
		t.Errorf("acked = %v, want 1", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric names break Prometheus conventions: %v %v", problems, err)
	}
}

func TestNewFailsWhenTheMetricsAreRegisteredTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg); err == nil || !strings.HasPrefix(err.Error(), "azqueueprom: ") {
		t.Errorf("second New on one registry: %v, want an azqueueprom error", err)
	}
}
