package azqueue

import (
	"errors"
	"reflect"
	"runtime"
	"strings"

	"github.com/micro/go-micro/v2/broker"
)

// permanentPrefix starts the text of every error Permanent returns. go-micro's
// server hands the broker its subscribers' errors as text only
// ("subscriber error: " and the handlers' errors, one per line), so the text
// is how a permanent error is known through it.
const permanentPrefix = "permanent error: "

// Permanent marks err as an error that no retry can fix (a message that
// breaks a business rule, refers to something that does not exist, fails
// validation): its message goes to the poison queue at once, with err as the
// reason, instead of being retried up to MaxDequeueCount times. Return it
// from a broker handler, or from a go-micro subscriber:
//
//	func (s *Sub) Handle(ctx context.Context, msg *example.Message) error {
//		if msg.Say == "" {
//			return azqueue.Permanent(errors.New("empty message"))
//		}
//		...
//	}
//
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return permanentPrefix + e.err.Error() }

func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was made by
// Permanent; or, for an error that came through go-micro's server as text,
// whether one of its handlers' errors was.
func IsPermanent(err error) bool {
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	if err == nil {
		return false
	}
	text, ok := strings.CutPrefix(err.Error(), goMicroHandlerErrorPrefix)
	if !ok {
		return false
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, permanentPrefix) {
			return true
		}
	}
	return false
}

// goMicroHandlerErrorPrefix starts every error go-micro's gRPC server returns
// for a subscriber whose handler ran and failed (server/grpc/subscriber.go).
const goMicroHandlerErrorPrefix = "subscriber error: "

// goMicroSubscriberHandler names the closure go-micro's gRPC server
// subscribes with for every micro.RegisterSubscriber (createSubHandler in
// server/grpc/subscriber.go). The compiler names it after where it was
// inlined (".Register.(*grpcServer).createSubHandler.func3" in a normal
// build, "createSubHandler.func1" without inlining), so the package and
// the function's name are matched, not the closure's number.
// TestGoMicroServerHandlersAreRecognised keeps this true for the go-micro
// this module requires.
const (
	goMicroServerPackage     = "github.com/micro/go-micro/v2/server/grpc."
	goMicroSubscriberHandler = ".createSubHandler.func"
)

// isGoMicroSubscriber reports whether h is go-micro's gRPC server's handler
// for a registered subscriber, whose errors have a known form.
func isGoMicroSubscriber(h broker.Handler) bool {
	if h == nil {
		return false
	}
	f := runtime.FuncForPC(reflect.ValueOf(h).Pointer())
	return f != nil && strings.HasPrefix(f.Name(), goMicroServerPackage) && strings.Contains(f.Name(), goMicroSubscriberHandler)
}

// poisonAtOnce says whether a handler's error means that its message can
// never be handled, and why. Two kinds cannot:
//   - an error marked Permanent;
//   - from go-micro's gRPC server, an error that is neither its handlers'
//     ("subscriber error: ...") nor a recovered panic: the server found no
//     codec for the message's Content-Type, or its codec could not decode
//     the body, before any handler ran. The same bytes fail the same way on
//     every delivery.
//
// Every other error is retried.
func poisonAtOnce(err error, fromGoMicro bool, contentType string) (code PoisonReason, reason string, ok bool) {
	if IsPermanent(err) {
		return PoisonPermanent, "the handler reported a permanent error: " + err.Error(), true
	}
	if !fromGoMicro {
		return "", "", false
	}
	text := err.Error()
	if strings.HasPrefix(text, goMicroHandlerErrorPrefix) || strings.Contains(text, "panic recovered") {
		return "", "", false
	}
	return PoisonUndecodable, "go-micro could not decode the message as " + contentType + ": " + text, true
}
