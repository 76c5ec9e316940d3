// Package azqueueprom exports what an azqueue broker does as Prometheus
// metrics: it implements azqueue.Observer. It is a package of its own so
// that importing the broker does not import Prometheus.
//
//	reg := prometheus.NewRegistry()
//	obs, err := azqueueprom.New(reg)
//	...
//	b := azqueue.NewBroker(azqueue.WithObserver(obs))
//
// Every message metric is labelled with topic, group and queue; requests
// with operation and the answer's status, and their errors with the
// service's error code (ServerBusy shows throttling).
package azqueueprom

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
)

// Namespace prefixes every metric name.
const Namespace = "azqueue"

// Label names.
const (
	LabelTopic     = "topic"
	LabelGroup     = "group"
	LabelQueue     = "queue"
	LabelReason    = "reason"
	LabelOutcome   = "outcome"
	LabelOperation = "operation"
	LabelStatus    = "status"
	LabelCode      = "code"
)

// Outcomes of a handler, the values of LabelOutcome.
const (
	OutcomeOK    = "ok"
	OutcomeError = "error"
)

// CodeNoResponse is the code of a request that got no answer.
const CodeNoResponse = "no_response"

var queueLabels = []string{LabelTopic, LabelGroup, LabelQueue}

// Observer is an azqueue.Observer that updates Prometheus metrics.
type Observer struct {
	published, delivered, acked, retried, handedBack  *prometheus.CounterVec
	renewals, leasesLost, polls, emptyPolls, poisoned *prometheus.CounterVec
	requests, requestErrors                           *prometheus.CounterVec
	handlerDuration, messageAge                       *prometheus.HistogramVec
	depth                                             *prometheus.GaugeVec
}

// New returns an Observer whose metrics are registered with reg.
func New(reg prometheus.Registerer) (*Observer, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	}
	withReason := append(append([]string{}, queueLabels...), LabelReason)
	o := &Observer{
		published:     counter("published_total", "Messages enqueued, one per group queue of the topic.", queueLabels...),
		delivered:     counter("delivered_total", "Messages given to a handler.", queueLabels...),
		acked:         counter("acked_total", "Handled messages deleted from their queue.", queueLabels...),
		retried:       counter("retried_total", "Messages made visible again for a later delivery, after a handler error or a Nack.", queueLabels...),
		handedBack:    counter("handed_back_total", "Messages a stopping subscription made visible again before any handler started them.", queueLabels...),
		renewals:      counter("lease_renewals_total", "Lease renewals of messages being handled.", queueLabels...),
		leasesLost:    counter("leases_lost_total", "Leases found gone: another consumer may have the message.", queueLabels...),
		polls:         counter("polls_total", "Dequeue requests that were answered.", queueLabels...),
		emptyPolls:    counter("empty_polls_total", "Dequeue requests answered with no message.", queueLabels...),
		poisoned:      counter("poisoned_total", "Messages moved to the poison queue, by reason (max_deliveries, unreadable, permanent, undecodable).", withReason...),
		requests:      counter("requests_total", "HTTP requests to the queue service, by operation and the answer's status (0: no answer).", LabelOperation, LabelStatus),
		requestErrors: counter("request_errors_total", "Failed HTTP requests to the queue service, by operation and the service's error code (no_response when none came).", LabelOperation, LabelCode),
		handlerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "handler_duration_seconds", Help: "Time handlers took, by outcome (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1ms to about 4m
		}, append(append([]string{}, queueLabels...), LabelOutcome)),
		messageAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "message_age_seconds", Help: "Time from a message's first enqueue to its delivery: the queue's lag.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 11), // 10ms to about 3h
		}, queueLabels),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "queue_depth_messages", Help: "The service's approximate count of messages in the queue, invisible ones included, as last sampled (azqueue.DepthSampleInterval).",
		}, queueLabels),
	}
	for _, c := range []prometheus.Collector{
		o.published, o.delivered, o.acked, o.retried, o.handedBack, o.renewals, o.leasesLost, o.polls, o.emptyPolls, o.poisoned,
		o.requests, o.requestErrors, o.handlerDuration, o.messageAge, o.depth,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("azqueueprom: register metrics: %w", err)
		}
	}
	return o, nil
}

var _ azqueue.Observer = (*Observer)(nil)

func values(q azqueue.Queue) []string { return []string{q.Topic, q.Group, q.Name} }

// Published implements azqueue.Observer.
func (o *Observer) Published(q azqueue.Queue) { o.published.WithLabelValues(values(q)...).Inc() }

// Delivered implements azqueue.Observer.
func (o *Observer) Delivered(q azqueue.Queue, age time.Duration, _ int64) {
	o.delivered.WithLabelValues(values(q)...).Inc()
	o.messageAge.WithLabelValues(values(q)...).Observe(age.Seconds())
}

// Handled implements azqueue.Observer.
func (o *Observer) Handled(q azqueue.Queue, took time.Duration, err error) {
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeError
	}
	o.handlerDuration.WithLabelValues(q.Topic, q.Group, q.Name, outcome).Observe(took.Seconds())
}

// Acked implements azqueue.Observer.
func (o *Observer) Acked(q azqueue.Queue) { o.acked.WithLabelValues(values(q)...).Inc() }

// Retried implements azqueue.Observer.
func (o *Observer) Retried(q azqueue.Queue) { o.retried.WithLabelValues(values(q)...).Inc() }

// Poisoned implements azqueue.Observer.
func (o *Observer) Poisoned(q azqueue.Queue, reason azqueue.PoisonReason) {
	o.poisoned.WithLabelValues(q.Topic, q.Group, q.Name, string(reason)).Inc()
}

// HandedBack implements azqueue.Observer.
func (o *Observer) HandedBack(q azqueue.Queue) { o.handedBack.WithLabelValues(values(q)...).Inc() }

// LeaseRenewed implements azqueue.Observer.
func (o *Observer) LeaseRenewed(q azqueue.Queue) { o.renewals.WithLabelValues(values(q)...).Inc() }

// LeaseLost implements azqueue.Observer.
func (o *Observer) LeaseLost(q azqueue.Queue) { o.leasesLost.WithLabelValues(values(q)...).Inc() }

// Polled implements azqueue.Observer.
func (o *Observer) Polled(q azqueue.Queue, messages int) {
	o.polls.WithLabelValues(values(q)...).Inc()
	if messages == 0 {
		o.emptyPolls.WithLabelValues(values(q)...).Inc()
	}
}

// Requested implements azqueue.Observer.
func (o *Observer) Requested(op string, status int, code string) {
	o.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	switch {
	case status == 0:
		o.requestErrors.WithLabelValues(op, CodeNoResponse).Inc()
	case status >= 400:
		if code == "" {
			code = strconv.Itoa(status)
		}
		o.requestErrors.WithLabelValues(op, code).Inc()
	}
}

// Depth implements azqueue.Observer.
func (o *Observer) Depth(q azqueue.Queue, messages int64) {
	o.depth.WithLabelValues(values(q)...).Set(float64(messages))
}
