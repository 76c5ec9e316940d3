package azqueue

import (
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage"
	"github.com/poc-go-micro/poc-go-micro/broker/azqueue/internal/storage/storagetest"
)

// BenchmarkLeaseRenewer measures what keeping one message's lease renewed
// costs when its handler is done long before the first renewal is due,
// as for almost every message: starting the renewer and stopping it.
func BenchmarkLeaseRenewer(b *testing.B) {
	q := storagetest.NewService().Queue("bench")
	m := storage.Message{ID: "id", Text: "text", Lease: storage.Lease{PopReceipt: "receipt"}}
	meter := &meter{stats: new(counters), observer: NoObserver{}}
	renewErrors := throttledLog{interval: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		l := newLease(q, m, 30*time.Second, time.Now(), meter, &renewErrors)
		l.startRenewing()
		l.stopRenewing()
	}
}
