package azqueue

import (
	"strings"
	"testing"

	"github.com/micro/go-micro/v2/broker"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
)

// benchMessage is a typical event: go-micro's headers and a 1 KiB proto
// body, as the bench suite (bench/) publishes.
func benchMessage() *broker.Message {
	return &broker.Message{
		Header: map[string]string{"Content-Type": "application/grpc+proto", "Micro-Topic": "example.events"},
		Body:   []byte("\n\x80\b" + strings.Repeat("x", 1024)),
	}
}

// BenchmarkDecodeMessage measures what a consumer spends reading one
// envelope (BENCHMARKS.md, finding 4).
func BenchmarkDecodeMessage(b *testing.B) {
	text, _, err := encodeMessage(benchMessage(), false)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := decodeMessage(text, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeMessage measures what a publish spends writing one
// envelope, Micro-Id included (BENCHMARKS.md, finding 3).
func BenchmarkEncodeMessage(b *testing.B) {
	m := benchMessage()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := encodeMessage(m, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublish measures what one Publish costs the publisher outside
// the storage service: settings, the topic's queue list, the envelope and
// the bookkeeping, over the in-memory fake.
func BenchmarkPublish(b *testing.B) {
	br := NewBroker(brokerValue(storageServiceKey, storagetest.NewService()))
	if err := br.Connect(); err != nil {
		b.Fatal(err)
	}
	defer br.Disconnect()
	m := benchMessage()
	if err := br.Publish("bench", m); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Publish("bench", m); err != nil {
			b.Fatal(err)
		}
	}
}
