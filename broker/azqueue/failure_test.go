package azqueue

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/micro/go-micro/v2/broker"
	mbroker "github.com/micro/go-micro/v2/broker/memory"
	merrors "github.com/micro/go-micro/v2/errors"
	"github.com/micro/go-micro/v2/registry/memory"
	"github.com/micro/go-micro/v2/server"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

func TestPoisonAtOnceOnlyForErrorsNoRetryCanFix(t *testing.T) {
	permanent := Permanent(errors.New("unknown customer"))
	tests := []struct {
		name        string
		err         error
		fromGoMicro bool
		want        bool
	}{
		{"a handler error is retried", errors.New("database down"), false, false},
		{"a Permanent error poisons at once", permanent, false, true},
		{"a wrapped Permanent error poisons at once", fmt.Errorf("order 7: %w", permanent), false, true},
		{"an error that reads like go-micro's is retried outside go-micro", errors.New("Unsupported Content-Type: text/x"), false, false},
		{"go-micro: a handler error is retried", errors.New(goMicroHandlerErrorPrefix + "database down"), true, false},
		{"go-micro: a Permanent error, as text, poisons at once", errors.New(goMicroHandlerErrorPrefix + permanent.Error()), true, true},
		{"go-micro: one handler's Permanent error of two poisons at once", errors.New(goMicroHandlerErrorPrefix + "database down\n" + permanent.Error()), true, true},
		{"go-micro: a recovered panic is retried", merrors.InternalServerError("go.micro.server", "panic recovered: %v", "nil map"), true, false},
		{"go-micro: an error before any handler ran poisons at once", errors.New("Unsupported Content-Type: text/x"), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, got := poisonAtOnce(tt.err, tt.fromGoMicro, "application/json")
			if got != tt.want {
				t.Fatalf("poisonAtOnce(%q) = %v (%q), want %v", tt.err, got, reason, tt.want)
			}
			if got && reason == "" {
				t.Errorf("poisoned without a reason")
			}
			wantCode := PoisonUndecodable
			if strings.Contains(tt.err.Error(), permanent.Error()) {
				wantCode = PoisonPermanent
			}
			if got && code != wantCode {
				t.Errorf("poisoned with code %q, want %q", code, wantCode)
			}
		})
	}
	if Permanent(nil) != nil {
		t.Errorf("Permanent(nil) is not nil")
	}
	if !errors.Is(fmt.Errorf("x: %w", permanent), errors.Unwrap(permanent)) {
		t.Errorf("Permanent hides the error it wraps from errors.Is")
	}
}

// recordingBroker is go-micro's memory broker that keeps the handler
// go-micro's server subscribes with.
type recordingBroker struct {
	broker.Broker
	handler broker.Handler
}

func (r *recordingBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	r.handler = h
	return r.Broker.Subscribe(topic, h, opts...)
}

type testEvent struct {
	broker.Event
	m *broker.Message
}

func (e testEvent) Message() *broker.Message { return e.m }

// goMicroHandler returns the broker.Handler go-micro's gRPC server
// subscribes with for a subscriber of fn, started for real on loopback with
// an in-memory registry.
func goMicroHandler(t *testing.T, fn func(context.Context, *example.Message) error) broker.Handler {
	t.Helper()
	rec := &recordingBroker{Broker: mbroker.NewBroker()}
	srv := grpcserver.NewServer(server.Name("failure-test"), server.Address("127.0.0.1:0"),
		server.Broker(rec), server.Registry(memory.NewRegistry()))
	if err := srv.Subscribe(srv.NewSubscriber("failure.test", fn)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if rec.handler == nil {
		t.Fatal("go-micro's server did not subscribe")
	}
	return rec.handler
}

// TestGoMicroServerHandlersAreRecognised proves, against the go-micro this
// module requires, what poisonAtOnce assumes of its gRPC server: its handler
// is recognised, decoding errors come back bare and handler errors as its
// "subscriber error" text.
func TestGoMicroServerHandlersAreRecognised(t *testing.T) {
	var handlerErr error
	h := goMicroHandler(t, func(context.Context, *example.Message) error { return handlerErr })
	if !isGoMicroSubscriber(h) {
		t.Fatalf("go-micro's subscriber handler %s is not recognised; want a name in %s containing %s", runtime.FuncForPC(reflect.ValueOf(h).Pointer()).Name(), goMicroServerPackage, goMicroSubscriberHandler)
	}
	if isGoMicroSubscriber(func(broker.Event) error { return nil }) || isGoMicroSubscriber(nil) {
		t.Fatal("a plain handler is taken for go-micro's")
	}
	valid := []byte("\n\x02hi") // example.Message{Say: "hi"}
	tests := []struct {
		name        string
		contentType string
		body        []byte
		handlerErr  error
		poison      bool
	}{
		{"random bytes labelled proto", "application/grpc+proto", []byte("\xff\xff\xff\xff"), nil, true},
		{"a proto body labelled JSON", "application/json", valid, nil, true},
		{"an unsupported Content-Type", "text/x-unknown", valid, nil, true},
		{"a handler error", "application/grpc+proto", valid, errors.New("database down"), false},
		{"a Permanent handler error", "application/grpc+proto", valid, Permanent(errors.New("unknown customer")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handlerErr = tt.handlerErr
			err := h(testEvent{m: &broker.Message{Header: map[string]string{headerContentType: tt.contentType}, Body: tt.body}})
			if err == nil {
				t.Fatal("go-micro's handler accepted it")
			}
			code, reason, poison := poisonAtOnce(err, true, tt.contentType)
			if poison != tt.poison {
				t.Errorf("go-micro's error %q: poison at once %v (%q), want %v", err, poison, reason, tt.poison)
			}
			if poison && tt.handlerErr == nil && code != PoisonUndecodable {
				t.Errorf("go-micro's decoding error %q: code %q, want %q", err, code, PoisonUndecodable)
			}
		})
	}
}
