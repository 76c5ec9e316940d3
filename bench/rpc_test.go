package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// Method paths and stream descriptions of the plain grpc-go baseline: there
// is no generated grpc-go stub (protoc-gen-go's grpc plugin needs a newer
// grpc than the v1.26.0 go-micro pins), so the baseline calls the same
// paths by hand.
const (
	methodCall     = "/example.Example/Call"
	methodStream   = "/example.Example/Stream"
	methodPingPong = "/example.Example/PingPong"
)

var (
	streamDesc   = &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}
	pingPongDesc = &grpc.StreamDesc{StreamName: "PingPong", ServerStreams: true, ClientStreams: true}
)

const (
	// rpcName is the name sent in Call; the answer must be "Hello "+rpcName.
	rpcName = "bench"
	// rpcTimeout bounds one call, and one whole stream.
	rpcTimeout = 5 * time.Minute
	// rpcSlice is how long each side calls before the other's turn.
	rpcSlice = 100 * time.Millisecond
	// streamLength is the number of messages of one Stream call: long
	// enough that opening the stream (go-micro dials a new connection for
	// every stream) is a small part of it, as in a long-running stream.
	streamLength = 50000
	// duplexStrokes is the number of pings one full-duplex slice sends.
	duplexStrokes = 20000
)

// BenchmarkUnary measures Call: latency one call at a time (conc=1), and
// throughput with 16 callers (conc=16).
func BenchmarkUnary(b *testing.B) {
	env := rpcFor(b)
	microCall := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		rsp, err := env.micro.Call(ctx, &example.Request{Name: rpcName})
		if err != nil {
			return fmt.Errorf("go-micro Call: %w", err)
		}
		return checkGreeting(rsp)
	}
	grpcCall := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		var rsp example.Response
		if err := env.grpc.Invoke(ctx, methodCall, &example.Request{Name: rpcName}, &rsp); err != nil {
			return fmt.Errorf("grpc-go Invoke: %w", err)
		}
		return checkGreeting(&rsp)
	}
	for _, workers := range []int{1, 16} {
		b.Run(fmt.Sprintf("conc=%d", workers), func(b *testing.B) {
			micro, plain := &side{name: "gomicro"}, &side{name: "grpc"}
			micro.slice = func(b *testing.B) int { return runFor(b, rpcSlice, workers, timed(&micro.lat, microCall)) }
			plain.slice = func(b *testing.B) int { return runFor(b, rpcSlice, workers, timed(&plain.lat, grpcCall)) }
			alternate(b, "calls/s", micro, plain)
		})
	}
}

func checkGreeting(rsp *example.Response) error {
	if want := "Hello " + rpcName; rsp.GetMsg() != want {
		return fmt.Errorf("answer %q, want %q", rsp.GetMsg(), want)
	}
	return nil
}

// BenchmarkStream measures a long server stream: each slice is one Stream
// call of streamLength messages, received and checked in order.
func BenchmarkStream(b *testing.B) {
	env := rpcFor(b)
	micro := &side{name: "gomicro", slice: func(b *testing.B) int {
		return receiveStream(b, func(ctx context.Context, n int64) (func() (int64, error), func(), error) {
			s, err := env.micro.Stream(ctx, &example.StreamingRequest{Count: n})
			if err != nil {
				return nil, nil, err
			}
			recv := func() (int64, error) {
				m, err := s.Recv()
				return m.GetCount(), err
			}
			return recv, func() { s.Close() }, nil
		})
	}}
	plain := &side{name: "grpc", slice: func(b *testing.B) int {
		return receiveStream(b, func(ctx context.Context, n int64) (func() (int64, error), func(), error) {
			s, err := env.grpc.NewStream(ctx, streamDesc, methodStream)
			if err != nil {
				return nil, nil, err
			}
			if err := s.SendMsg(&example.StreamingRequest{Count: n}); err != nil {
				return nil, nil, err
			}
			if err := s.CloseSend(); err != nil {
				return nil, nil, err
			}
			recv := func() (int64, error) {
				var m example.StreamingResponse
				err := s.RecvMsg(&m)
				return m.GetCount(), err
			}
			return recv, func() {}, nil
		})
	}}
	alternate(b, "msgs/s", micro, plain)
}

// receiveStream opens one stream of streamLength messages with open,
// receives them all in order, expects the end of the stream, and returns
// the number received.
func receiveStream(b *testing.B, open func(ctx context.Context, n int64) (recv func() (int64, error), closeStream func(), err error)) int {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	recv, closeStream, err := open(ctx, streamLength)
	if err != nil {
		b.Fatalf("open the stream: %v", err)
	}
	defer closeStream()
	for i := 0; i < streamLength; i++ {
		got, err := recv()
		if err != nil {
			b.Fatalf("receive message %d of %d: %v", i, streamLength, err)
		}
		if got != int64(i) {
			b.Fatalf("message %d carries count %d", i, got)
		}
	}
	if _, err := recv(); !errors.Is(err, io.EOF) {
		b.Fatalf("after %d messages: got %v, want the end of the stream", streamLength, err)
	}
	return streamLength
}

// pingPongStream is what both clients' PingPong streams offer.
type pingPongStream struct {
	send  func(stroke int64) error
	recv  func() (int64, error)
	close func() error // after every pong was received
	next  int64        // the next stroke to send
}

// BenchmarkPingPong measures the bidirectional stream, one stream per
// client for the whole benchmark: lock-step round trips (send a ping, wait
// for its pong; slices of rpcSlice), and full duplex (a sender and a
// receiver at once; slices of duplexStrokes).
func BenchmarkPingPong(b *testing.B) {
	env := rpcFor(b)
	openMicro := func(ctx context.Context) (*pingPongStream, error) {
		s, err := env.micro.PingPong(ctx)
		if err != nil {
			return nil, err
		}
		return &pingPongStream{
			send: func(n int64) error { return s.Send(&example.Ping{Stroke: n}) },
			recv: func() (int64, error) {
				m, err := s.Recv()
				return m.GetStroke(), err
			},
			// go-micro has no half-close: Close cancels the call.
			close: s.Close,
		}, nil
	}
	openGRPC := func(ctx context.Context) (*pingPongStream, error) {
		s, err := env.grpc.NewStream(ctx, pingPongDesc, methodPingPong)
		if err != nil {
			return nil, err
		}
		return &pingPongStream{
			send: func(n int64) error { return s.SendMsg(&example.Ping{Stroke: n}) },
			recv: func() (int64, error) {
				var m example.Pong
				err := s.RecvMsg(&m)
				return m.GetStroke(), err
			},
			close: func() error {
				if err := s.CloseSend(); err != nil {
					return err
				}
				if err := s.RecvMsg(new(example.Pong)); !errors.Is(err, io.EOF) {
					return fmt.Errorf("after the last pong: got %v, want the end of the stream", err)
				}
				return nil
			},
		}, nil
	}
	b.Run("mode=lockstep", func(b *testing.B) {
		ms, gs := openPingPong(b, openMicro), openPingPong(b, openGRPC)
		micro, plain := &side{name: "gomicro"}, &side{name: "grpc"}
		micro.slice = func(b *testing.B) int { return runFor(b, rpcSlice, 1, timed(&micro.lat, ms.roundTrip)) }
		plain.slice = func(b *testing.B) int { return runFor(b, rpcSlice, 1, timed(&plain.lat, gs.roundTrip)) }
		alternate(b, "strokes/s", micro, plain)
	})
	b.Run("mode=duplex", func(b *testing.B) {
		ms, gs := openPingPong(b, openMicro), openPingPong(b, openGRPC)
		micro := &side{name: "gomicro", slice: func(b *testing.B) int { return ms.fullDuplex(b, duplexStrokes) }}
		plain := &side{name: "grpc", slice: func(b *testing.B) int { return gs.fullDuplex(b, duplexStrokes) }}
		alternate(b, "strokes/s", micro, plain)
	})
}

// openPingPong opens a stream for the benchmark and plays one stroke
// before the clock starts (go-micro dials a new connection per stream);
// b's cleanup closes it.
func openPingPong(b *testing.B, open func(ctx context.Context) (*pingPongStream, error)) *pingPongStream {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	s, err := open(ctx)
	if err != nil {
		cancel()
		b.Fatalf("open PingPong: %v", err)
	}
	if err := s.roundTrip(); err != nil {
		cancel()
		b.Fatalf("first stroke: %v", err)
	}
	b.Cleanup(func() {
		defer cancel()
		if err := s.close(); err != nil {
			b.Errorf("close PingPong: %v", err)
		}
	})
	return s
}

// roundTrip sends a ping and waits for its pong.
func (s *pingPongStream) roundTrip() error {
	n := s.next
	s.next++
	if err := s.send(n); err != nil {
		return fmt.Errorf("send ping %d: %w", n, err)
	}
	got, err := s.recv()
	if err != nil {
		return fmt.Errorf("receive pong %d: %w", n, err)
	}
	if got != n {
		return fmt.Errorf("pong %d carries stroke %d", n, got)
	}
	return nil
}

// fullDuplex sends n pings from one goroutine while this one receives the
// n pongs, in order.
func (s *pingPongStream) fullDuplex(b *testing.B, n int) int {
	first := s.next
	s.next += int64(n)
	sent := make(chan error, 1)
	go func() {
		for i := range int64(n) {
			if err := s.send(first + i); err != nil {
				sent <- fmt.Errorf("send ping %d: %w", first+i, err)
				return
			}
		}
		sent <- nil
	}()
	for i := range int64(n) {
		got, err := s.recv()
		if err != nil {
			b.Fatalf("receive pong %d: %v (sender: %v)", first+i, err, <-sent)
		}
		if got != first+i {
			b.Fatalf("pong %d carries stroke %d", first+i, got)
		}
	}
	if err := <-sent; err != nil {
		b.Fatal(err)
	}
	return n
}
