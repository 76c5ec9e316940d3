package azqueue

import (
	"github.com/micro/go-micro/v2/broker"
)

// NewBroker returns an Azure Storage Queues broker. (placeholder while the
// broker is being written; the real implementation replaces this file)
func NewBroker(opts ...broker.Option) broker.Broker {
	return broker.NewBroker(opts...)
}
