package azqueue

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recordingObserver counts what it is told, per method and queue name.
type recordingObserver struct {
	mu       sync.Mutex
	counts   map[string]int // "<method> <queue>"
	poisoned map[PoisonReason]int
	requests map[string]int // "<op> <status> <code>"
	ages     []time.Duration
	depths   []int64
	polled   int
}

func newRecordingObserver() *recordingObserver {
	return &recordingObserver{counts: map[string]int{}, poisoned: map[PoisonReason]int{}, requests: map[string]int{}}
}

func (o *recordingObserver) add(method string, q Queue) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[method+" "+q.Name]++
}

func (o *recordingObserver) Published(q Queue) { o.add("published", q) }
func (o *recordingObserver) Delivered(q Queue, age time.Duration, _ int64) {
	o.add("delivered", q)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ages = append(o.ages, age)
}
func (o *recordingObserver) Handled(q Queue, _ time.Duration, err error) {
	if err != nil {
		o.add("handled with an error", q)
		return
	}
	o.add("handled", q)
}
func (o *recordingObserver) Acked(q Queue)   { o.add("acked", q) }
func (o *recordingObserver) Retried(q Queue) { o.add("retried", q) }
func (o *recordingObserver) Poisoned(q Queue, reason PoisonReason) {
	o.add("poisoned", q)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.poisoned[reason]++
}
func (o *recordingObserver) HandedBack(q Queue)   { o.add("handed back", q) }
func (o *recordingObserver) LeaseRenewed(q Queue) { o.add("renewed", q) }
func (o *recordingObserver) LeaseLost(q Queue)    { o.add("lost", q) }
func (o *recordingObserver) Polled(q Queue, _ int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.polled++
}
func (o *recordingObserver) Requested(op string, status int, code string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests[fmt.Sprintf("%s %d %s", op, status, code)]++
}
func (o *recordingObserver) Depth(q Queue, n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.depths = append(o.depths, n)
}

func (o *recordingObserver) count(method, queue string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[method+" "+queue]
}

func (o *recordingObserver) totalRequests() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.requests {
		n += c
	}
	return n
}

// testObserverIsToldWhatStatsCount: an Observer sees, labelled with the
// queue, what Stats counts (published, delivered, acked, poisoned with its
// reason code), the lag of each delivery, every request the broker sent
// (as many as Stats.Requests, by operation) and depth samples.
func testObserverIsToldWhatStatsCount(t *testing.T, e *env) {
	const n = 4
	topic := newTopic()
	queue := queueName(t, topic, DefaultGroup)
	obs := newRecordingObserver()
	b := e.connected(WithObserver(obs), DepthSampleInterval(50*time.Millisecond))
	r := newRecorder(t)
	ids := publishMessages(t, b, topic, n)
	e.subscribe(b, topic, r.handler(func(ev Event, d delivery) error {
		if d.id == ids[0] {
			return Permanent(errors.New("unknown customer"))
		}
		return nil
	}), fastPolls)
	r.waitIDs(t, ids, waitLong)
	waitStats(t, b, fmt.Sprintf("acked=%d poisoned=1", n-1), func(s Stats) bool { return s.Acked == n-1 && s.Poisoned == 1 })
	eventually(t, waitLong, func() string { return fmt.Sprintf("%d depth samples", len(obs.depths)) }, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.depths) >= 2
	})

	for _, c := range []struct {
		method string
		want   int
	}{
		{"published", n}, {"delivered", n}, {"handled", n - 1}, {"handled with an error", 1}, {"acked", n - 1}, {"poisoned", 1},
	} {
		if got := obs.count(c.method, queue); got != c.want {
			t.Errorf("%s %s: told %d times, want %d", c.method, queue, got, c.want)
		}
	}
	obs.mu.Lock()
	if obs.poisoned[PoisonPermanent] != 1 {
		t.Errorf("poison reasons %v, want %s once", obs.poisoned, PoisonPermanent)
	}
	for _, age := range obs.ages {
		if age < 0 || age > waitLong {
			t.Errorf("a delivery's age is %s, want the time since it was published", age)
		}
	}
	if obs.polled == 0 {
		t.Error("no poll observed")
	}
	obs.mu.Unlock()
	if e.features.realService {
		// Stats counts a request as its answer comes; one may be on its way.
		s := b.Stats()
		if got := obs.totalRequests(); got < int(s.Requests)-2 || got > int(s.Requests) {
			t.Errorf("observer saw %d requests, Stats counted %d", got, s.Requests)
		}
		obs.mu.Lock()
		// n messages and one poison record are enqueued; the n messages
		// are deleted, acked or once poisoned.
		if obs.requests["enqueue 201 "] != n+1 || obs.requests["delete_message 204 "] != n || obs.requests["get_properties 200 "] < 2 {
			t.Errorf("requests by operation, status and code: %v; want %d enqueues (201), %d message deletes (204) and at least 2 property reads", obs.requests, n+1, n)
		}
		obs.mu.Unlock()
	}
}
