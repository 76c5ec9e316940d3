package handler

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	merrors "github.com/micro/go-micro/v2/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

func TestCall(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantMsg  string
		wantCode int32 // 0: success
	}{
		{name: "ok", in: "World", wantMsg: "Hello World"},
		{name: "longest accepted", in: strings.Repeat("a", MaxNameLength), wantMsg: "Hello " + strings.Repeat("a", MaxNameLength)},
		{name: "empty", in: "", wantCode: 400},
		{name: "whitespace", in: " \t\n", wantCode: 400},
		{name: "too long", in: strings.Repeat("a", MaxNameLength+1), wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rsp example.Response
			err := New().Call(context.Background(), &example.Request{Name: tt.in}, &rsp)
			if code := errorCode(t, err); code != tt.wantCode {
				t.Fatalf("Call(%.20q) error = %v, want code %d", tt.in, err, tt.wantCode)
			}
			if rsp.Msg != tt.wantMsg {
				t.Errorf("Call(%.20q) msg = %.40q, want %.40q", tt.in, rsp.Msg, tt.wantMsg)
			}
		})
	}
}

func TestStream(t *testing.T) {
	const maxCount = 10
	tests := []struct {
		name     string
		count    int64
		wantSent int
		wantCode int32
	}{
		{name: "zero", count: 0, wantSent: 0},
		{name: "one", count: 1, wantSent: 1},
		{name: "five", count: 5, wantSent: 5},
		{name: "maximum", count: maxCount, wantSent: maxCount},
		{name: "negative", count: -1, wantCode: 400},
		{name: "too large", count: maxCount + 1, wantCode: 400},
		{name: "far too large", count: 1 << 62, wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := newFakeCountStream(context.Background())
			err := New(MaxStreamCount(maxCount)).Stream(context.Background(), &example.StreamingRequest{Count: tt.count}, stream)
			if code := errorCode(t, err); code != tt.wantCode {
				t.Fatalf("Stream(%d) error = %v, want code %d", tt.count, err, tt.wantCode)
			}
			checkCounts(t, stream.sent, tt.wantSent)
		})
	}
}

func TestStreamStopsWhenClientCancels(t *testing.T) {
	const cancelAfter = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := newFakeCountStream(ctx)
	stream.onSend = func(sent int) {
		if sent == cancelAfter {
			cancel()
		}
	}

	err := New().Stream(ctx, &example.StreamingRequest{Count: DefaultMaxStreamCount}, stream)

	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stream() error = %v, want context.Canceled", err)
	}
	checkCounts(t, stream.sent, cancelAfter)
}

func TestStreamReturnsSendError(t *testing.T) {
	sendErr := errors.New("transport is closing")
	stream := newFakeCountStream(context.Background())
	stream.sendErr = sendErr

	err := New().Stream(context.Background(), &example.StreamingRequest{Count: 5}, stream)

	if !errors.Is(err, sendErr) {
		t.Errorf("Stream() error = %v, want it to wrap %v", err, sendErr)
	}
}

func TestPingPong(t *testing.T) {
	transportErr := errors.New("transport is closing")
	cancelledStatus := status.Error(codes.Canceled, "context canceled")
	tests := []struct {
		name string
		// pings the client sends before ending the stream with end.
		pings []int64
		// end is how the client ends the stream: io.EOF for a half-close,
		// a cancellation, or a transport error.
		end error
		// cancel says whether the stream's context is cancelled at the end.
		cancel    bool
		sendErr   error
		wantPongs int
		wantErr   error
	}{
		{name: "no pings", end: io.EOF},
		{name: "echo then half-close", pings: []int64{0, 1, 2, 42, -7}, end: io.EOF, wantPongs: 5},
		// A go-micro client ends the stream by cancelling it: a normal end,
		// not a failure in the RPC metrics.
		{name: "client cancels: a normal end", pings: []int64{0, 1}, end: cancelledStatus, cancel: true, wantPongs: 2},
		{name: "cancellation seen only in the status: a normal end", pings: []int64{0}, end: cancelledStatus, wantPongs: 1},
		{name: "receive error", pings: []int64{0}, end: transportErr, wantPongs: 1, wantErr: transportErr},
		{name: "send error", pings: []int64{0, 1}, end: io.EOF, sendErr: transportErr, wantErr: transportErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream := &fakePingPongStream{fakeStream: fakeStream{ctx: ctx, sendErr: tt.sendErr}, end: tt.end}
			for _, p := range tt.pings {
				stream.pings = append(stream.pings, &example.Ping{Stroke: p})
			}
			if tt.cancel {
				stream.onEnd = cancel
			}

			err := New().PingPong(ctx, stream)

			if !errors.Is(err, tt.wantErr) {
				t.Errorf("PingPong() error = %v, want %v", err, tt.wantErr)
			}
			if len(stream.pongs) != tt.wantPongs {
				t.Fatalf("PingPong() sent %d pongs, want %d", len(stream.pongs), tt.wantPongs)
			}
			for i, pong := range stream.pongs {
				if pong.Stroke != tt.pings[i] {
					t.Errorf("pong %d has stroke %d, want %d", i, pong.Stroke, tt.pings[i])
				}
			}
		})
	}
}

// errorCode returns the go-micro error code of err, 0 for nil; it fails
// the test for errors that are not go-micro errors.
func errorCode(t *testing.T, err error) int32 {
	t.Helper()
	if err == nil {
		return 0
	}
	var merr *merrors.Error
	if !errors.As(err, &merr) {
		t.Fatalf("error %v (%T) is not a go-micro error", err, err)
	}
	if merr.Detail == "" {
		t.Errorf("error %v has no detail for the caller", err)
	}
	return merr.Code
}

// checkCounts checks that sent holds exactly the counts 0..want-1.
func checkCounts(t *testing.T, sent []*example.StreamingResponse, want int) {
	t.Helper()
	if len(sent) != want {
		t.Fatalf("sent %d messages, want %d", len(sent), want)
	}
	for i, m := range sent {
		if m.Count != int64(i) {
			t.Errorf("message %d has count %d, want %d", i, m.Count, i)
		}
	}
}

// fakeStream is what the fakes of both streaming RPCs share: the
// client's context and the methods the handler must not use.
type fakeStream struct {
	ctx     context.Context
	sendErr error
}

func (s *fakeStream) Context() context.Context { return s.ctx }
func (s *fakeStream) Close() error             { return nil }
func (s *fakeStream) SendMsg(interface{}) error {
	return errors.New("fake stream: SendMsg is not used by the handler")
}
func (s *fakeStream) RecvMsg(interface{}) error {
	return errors.New("fake stream: RecvMsg is not used by the handler")
}

// fakeCountStream is the server side of Stream: it records what the
// handler sends.
type fakeCountStream struct {
	fakeStream
	// onSend runs after every successful send, with the number sent so far.
	onSend func(sent int)
	sent   []*example.StreamingResponse
}

var _ example.Example_StreamStream = (*fakeCountStream)(nil)

func newFakeCountStream(ctx context.Context) *fakeCountStream {
	return &fakeCountStream{fakeStream: fakeStream{ctx: ctx}}
}

func (s *fakeCountStream) Send(m *example.StreamingResponse) error {
	if s.sendErr != nil {
		return s.sendErr
	}
	s.sent = append(s.sent, m)
	if s.onSend != nil {
		s.onSend(len(s.sent))
	}
	return nil
}

// fakePingPongStream is the server side of PingPong: it replays pings,
// then returns end, and records the pongs the handler sends.
type fakePingPongStream struct {
	fakeStream
	pings []*example.Ping
	end   error
	// onEnd runs when Recv runs out of pings, before it returns end.
	onEnd func()
	pongs []*example.Pong
}

var _ example.Example_PingPongStream = (*fakePingPongStream)(nil)

func (s *fakePingPongStream) Send(m *example.Pong) error {
	if s.sendErr != nil {
		return s.sendErr
	}
	s.pongs = append(s.pongs, m)
	return nil
}

func (s *fakePingPongStream) Recv() (*example.Ping, error) {
	if len(s.pings) > 0 {
		p := s.pings[0]
		s.pings = s.pings[1:]
		return p, nil
	}
	if s.onEnd != nil {
		s.onEnd()
	}
	return nil, s.end
}
