package azqueue_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/poc-go-micro/poc-go-micro/broker/azqueue"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// A go-micro subscriber (micro.RegisterSubscriber) that marks what no retry
// can fix: the message goes to the poison queue on its first delivery, with
// this error as the reason, instead of being retried MaxDequeueCount times.
func ExamplePermanent() {
	handle := func(ctx context.Context, msg *example.Message) error {
		if msg.Say == "" {
			return azqueue.Permanent(errors.New("empty message"))
		}
		return nil // an ordinary error here would be retried
	}
	err := handle(context.Background(), &example.Message{})
	fmt.Println(err, azqueue.IsPermanent(err))
	// Output: permanent error: empty message true
}
