package clientcmd

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	merrors "github.com/micro/go-micro/v2/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clientErrorID is the id of the errors go-micro's client makes itself.
const clientErrorID = "go.micro.client"

var (
	// notRegistered matches the detail of go-micro's error for a service
	// the registry does not know (selector.ErrNotFound).
	notRegistered = regexp.MustCompile(`^service (\S+): not found$`)
	// lookupFailed matches the detail of go-micro's error for a registry
	// look-up that failed, e.g. because etcd is unreachable.
	lookupFailed = regexp.MustCompile(`^error selecting (\S+) node: (.*)$`)
	// unreachable matches details of the gRPC client's errors for a
	// registered node that does not answer, e.g. a server killed before it
	// could deregister. Only gRPC's wording: a broker that cannot connect
	// has its own.
	unreachable = regexp.MustCompile(`transport: Error while dialing|Error sending request|Error creating stream|code = Unavailable`)
	// dialFailed picks the address and the cause out of a failed dial.
	dialFailed = regexp.MustCompile(`dial tcp (\S+): ([^"]+)`)
)

// Describe turns err, typically from a go-micro client, into a one-line
// message for people. go-micro reports failures as JSON, e.g.
//
//	{"id":"go.micro.client","code":500,"detail":"service poc.example: not found","status":"Internal Server Error"}
//
// Describe replaces that part of err's text (any context wrapped around it
// with %w stays) with what it means, here
//
//	service "poc.example" is not registered (is the server running and using the same registry?)
//
// It also understands the gRPC status errors go-micro's client streams
// return as they are, and context.DeadlineExceeded.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	inner, description, ok := explain(err)
	if !ok {
		return err.Error()
	}
	text := err.Error()
	if innerText := inner.Error(); strings.Contains(text, innerText) {
		return strings.Replace(text, innerText, description, 1)
	}
	return text + ": " + description
}

// explain finds the error in err's chain that says what went wrong and
// returns it with its description.
func explain(err error) (inner error, description string, ok bool) {
	var merr *merrors.Error
	if errors.As(err, &merr) {
		return merr, describeMicroError(merr), true
	}
	var grpcErr interface {
		error
		GRPCStatus() *status.Status
	}
	if errors.As(err, &grpcErr) {
		s := grpcErr.GRPCStatus()
		if parsed := merrors.Parse(s.Message()); parsed.Code != 0 {
			return grpcErr, describeMicroError(parsed), true
		}
		return grpcErr, describeStatus(s), true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded, timedOut(context.DeadlineExceeded.Error()), true
	}
	// An error flattened to text on its way, e.g. by fmt.Errorf with %v.
	if parsed := merrors.Parse(err.Error()); parsed.Code != 0 {
		return err, describeMicroError(parsed), true
	}
	return nil, "", false
}

// describeMicroError describes a go-micro error by its code and detail.
func describeMicroError(e *merrors.Error) string {
	detail := e.Detail
	switch {
	case e.Code == 408:
		return timedOut(detail)
	case e.Code == 400:
		return detail
	case notRegistered.MatchString(detail):
		service := notRegistered.FindStringSubmatch(detail)[1]
		return fmt.Sprintf("service %q is not registered (is the server running and using the same registry?)", service)
	case lookupFailed.MatchString(detail):
		m := lookupFailed.FindStringSubmatch(detail)
		if m[2] == "none available" {
			return fmt.Sprintf("service %q has no usable node in the registry", m[1])
		}
		return fmt.Sprintf("cannot look up service %q in the registry: %s (is the registry reachable? see --registry and --registry_address)", m[1], m[2])
	case unreachable.MatchString(detail):
		if m := dialFailed.FindStringSubmatch(detail); m != nil {
			return fmt.Sprintf("server registered at %s is unreachable (%s); did it stop without deregistering?", m[1], m[2])
		}
		return "server unreachable (registered, but not answering; did it stop without deregistering?): " + detail
	case detail == "":
		return fmt.Sprintf("%d %s from %s", e.Code, e.Status, e.Id)
	case e.Status == "" || e.Id == clientErrorID:
		// The client's own failures, e.g. a broker that cannot connect:
		// the status adds nothing to the detail.
		return detail
	default:
		return fmt.Sprintf("%s (%s)", detail, e.Status)
	}
}

// describeStatus describes a gRPC status that carries no go-micro error.
func describeStatus(s *status.Status) string {
	switch s.Code() {
	case codes.DeadlineExceeded:
		return timedOut(s.Message())
	case codes.Canceled:
		return "cancelled: " + s.Message()
	case codes.Unavailable:
		return "server unreachable: " + s.Message()
	default:
		return fmt.Sprintf("%s (%s)", s.Message(), s.Code())
	}
}

// timedOut describes a timeout whose cause reads cause.
func timedOut(cause string) string {
	return fmt.Sprintf("timed out: no answer within the --timeout (%s)", cause)
}
