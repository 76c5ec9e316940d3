//go:build faults

package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	debug "github.com/micro/go-micro/v2/debug/service/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

var (
	pingPongDesc = &grpc.StreamDesc{StreamName: "PingPong", ServerStreams: true, ClientStreams: true}
	streamDesc   = &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}
)

// processStatus returns a process's resident memory in bytes and its OS
// thread count, from /proc.
func processStatus(t *testing.T, pid int) (rss uint64, threads int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the server's /proc status: %v", err)
	}
	return parseProcStatus(string(b))
}

func parseProcStatus(status string) (rss uint64, threads int) {
	for _, line := range strings.Split(status, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			rss = kb << 10
		case "Threads:":
			threads, _ = strconv.Atoi(fields[1])
		}
	}
	return rss, threads
}

// usage is the server's resource use at one moment.
type usage struct {
	goroutines, heap, rss uint64
	threads               int
}

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, %d MiB heap, %d MiB RSS, %d threads", u.goroutines, u.heap>>20, u.rss>>20, u.threads)
}

func measure(t *testing.T, conn *grpc.ClientConn, pid int) usage {
	t.Helper()
	var u usage
	u.goroutines, u.heap = runtimeStats(t, conn)
	u.rss, u.threads = processStatus(t, pid)
	return u
}

// severableConn is a client connection whose TCP connections the test can
// cut, as a client that vanishes mid-stream would.
type severableConn struct {
	*grpc.ClientConn
	mu    sync.Mutex
	conns []net.Conn
}

func dialSeverable(t *testing.T, addr string) *severableConn {
	t.Helper()
	c := &severableConn{}
	c.ClientConn = dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
		}
		return conn, err
	}))
	return c
}

// sever closes the TCP connections under the client without a word of
// HTTP/2: to the server, the client is simply gone.
func (c *severableConn) sever() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
}

// Bounds of scenario 8, on the server process.
const (
	// perStreamGoroutines bounds the goroutines one open stream may cost
	// the server (gRPC's handler goroutine, go-micro's wrappers).
	perStreamGoroutines = 2
	// goroutineSlack is what may differ from the baseline when the hostile
	// clients are gone: timers, pollers and connection housekeeping.
	goroutineSlack = 10
	// maxHeap bounds Debug.Stats' heap, which counts garbage not yet
	// collected: it peaks near twice the live heap.
	maxHeap = 128 << 20
	maxRSS  = 256 << 20
)

// TestHostileRPCClientsAreBounded is scenario 8: while a well-behaved
// client calls Example.Call every 100 ms, hostile clients send oversized
// names (1 KiB + 1 to 8 MiB, 20 calls of each size at once) and
// out-of-range Stream counts, then hold 640 streams at once over ten
// connections: 500 PingPong streams playing ten rounds, 100 PingPong
// streams that never send, 20 Streams of 100,000 counts never read, and 20
// streams whose client vanishes mid-stream (its TCP connection closed
// without a word of HTTP/2); then every client goes away.
//
// Asserted, with go-micro's Debug.Stats (goroutines, heap) and /proc
// (RSS) of the server, sampled every 100 ms: names above the limit are
// refused with InvalidArgument, messages above --max_message_size with
// ResourceExhausted before they are read, bad counts with InvalidArgument;
// during the load the server holds at most perStreamGoroutines per stream
// over its baseline, at most 128 MiB of heap (garbage included) and 256 MiB
// RSS; within 15 s of the clients leaving its goroutines are back within 10
// of the baseline; every probe call succeeds within its 2 s bound; and a SIGTERM with idle streams
// still open stops the server cleanly (status 0, deregistered) within the
// gRPC server's one-second grace.
func TestHostileRPCClientsAreBounded(t *testing.T) {
	s := newStack(t)
	server := s.startServer("server", nil)
	addr := serverAddress(t, server)
	control := dial(t, addr)
	warmUp(t, control)
	base := measure(t, control, server.Pid())
	probe := startProber(t, control, 100*time.Millisecond, 2*time.Second)
	peak := startSampler(t, control, server.Pid())

	refusals := sendOversizedNames(t, addr)
	checkOutOfRangeCounts(t, control)
	afterNames := peak.peak()
	t.Logf("baseline %s; peak after oversized names %s", base, afterNames)

	streams := openHostileStreams(t, addr)
	testenv.WaitFor(t, 30*time.Second, "the 500 PingPong streams to finish their rounds", streams.roundsDone)
	during := measure(t, control, server.Pid())
	t.Logf("with %d streams open: %s; peak so far %s", streams.count(), during, peak.peak())
	if streams.failures() > 0 {
		t.Errorf("%d of the 500 PingPong streams failed: %v", streams.failures(), streams.errs[:min(3, len(streams.errs))])
	}
	open := uint64(streams.count())
	if limit := base.goroutines + perStreamGoroutines*open + goroutineSlack; during.goroutines > limit {
		t.Errorf("with %d streams open the server runs %d goroutines, above %d (%d per stream over the baseline %d)", open, during.goroutines, limit, perStreamGoroutines, base.goroutines)
	}

	streams.closeAll()
	var after usage
	settle := testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("the server's goroutines back within %d of the baseline %d", goroutineSlack, base.goroutines), func() bool {
		after = measure(t, control, server.Pid())
		return after.goroutines <= base.goroutines+goroutineSlack
	})
	top := peak.stop()
	calls, slowest := probe.check(t, "while hostile clients came and went")
	if top.heap > maxHeap {
		t.Errorf("the server's heap peaked at %d MiB, above %d MiB", top.heap>>20, maxHeap>>20)
	}
	if top.rss > maxRSS {
		t.Errorf("the server's RSS peaked at %d MiB, above %d MiB", top.rss>>20, maxRSS>>20)
	}

	// A graceful stop is not held up by streams that never end.
	idle := dialSeverable(t, addr)
	for range 5 {
		if _, err := idle.NewStream(context.Background(), pingPongDesc, methodPingPong); err != nil {
			t.Fatal(err)
		}
		unread, err := idle.NewStream(context.Background(), streamDesc, methodStream)
		if err != nil {
			t.Fatal(err)
		}
		if err := unread.SendMsg(&example.StreamingRequest{Count: 100000}); err != nil {
			t.Fatal(err)
		}
	}
	stoppingAt := time.Now()
	if err := server.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := server.Wait(10 * time.Second)
	stopTook := time.Since(stoppingAt)
	if err != nil || code != 0 {
		t.Errorf("SIGTERM with idle streams open: exit %d, %v after %s\n%s", code, err, stopTook, tailOf(server.Output(), 10))
	}
	if keys := s.etcd.Keys(t, "/micro/registry/"+s.service+"/"); len(keys) != 0 {
		t.Errorf("still registered after the stop: %v", keys)
	}
	assertClean(t, "server", server)
	record(t, outcome{
		scenario: 8, title: "hostile RPC clients: oversized names, huge counts, 640 streams (idle, unread, vanishing), then gone",
		published: notApplicable, handled: notApplicable, duplicates: notApplicable, poisoned: notApplicable, lost: notApplicable,
		notes: fmt.Sprintf("%s; peak after the oversized names %d MiB heap, %d MiB RSS. Baseline %s; with %d streams open %s; peak %d goroutines, %d MiB heap, %d MiB RSS; back to %d goroutines %s after the clients left (RSS %d MiB). %d probe calls all answered, slowest %s. SIGTERM with 10 idle streams open: exit 0 in %s",
			refusals, afterNames.heap>>20, afterNames.rss>>20, base, open, during, top.goroutines, top.heap>>20, top.rss>>20, after.goroutines, seconds(settle), after.rss>>20, calls, slowest.Round(time.Millisecond), seconds(stopTook)),
	})
}

// warmUp runs every RPC once, so the baseline includes what the first
// calls set up (connection, pools, codecs).
func warmUp(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if _, err := call(ctx, conn, "warm up"); err != nil {
		t.Fatalf("warm up Example.Call: %v", err)
	}
	st, err := conn.NewStream(ctx, streamDesc, methodStream)
	if err == nil {
		err = st.SendMsg(&example.StreamingRequest{Count: 3})
	}
	for err == nil {
		err = st.RecvMsg(&example.StreamingResponse{})
	}
	if err != io.EOF {
		t.Fatalf("warm up Example.Stream: %v", err)
	}
	pp, err := conn.NewStream(ctx, pingPongDesc, methodPingPong)
	if err == nil {
		err = pp.SendMsg(&example.Ping{Stroke: 1})
	}
	if err == nil {
		err = pp.RecvMsg(&example.Pong{})
	}
	if err != nil {
		t.Fatalf("warm up Example.PingPong: %v", err)
	}
	if err := pp.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := pp.RecvMsg(&example.Pong{}); err != io.EOF {
		t.Fatalf("end Example.PingPong: %v", err)
	}
	runtimeStats(t, conn)
}

// oversizedCalls is how many Calls sendOversizedNames makes at once with a
// name of each size.
const oversizedCalls = 20

// sendOversizedNames makes oversizedCalls concurrent Calls with names of
// each size and checks how the server refuses them; it returns a summary
// for the report.
func sendOversizedNames(t *testing.T, addr string) string {
	t.Helper()
	conn := dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)))
	sizes := []struct {
		bytes int
		want  codes.Code
	}{
		{1025, codes.InvalidArgument},      // one byte over the name limit
		{60 << 10, codes.InvalidArgument},  // under the message limit, over the name limit
		{1 << 20, codes.ResourceExhausted}, // over the message limit
		{8 << 20, codes.ResourceExhausted}, // over gRPC's default limit too
	}
	type result struct {
		size int
		code codes.Code
		msg  string
	}
	results := make(chan result, len(sizes)*oversizedCalls)
	var wg sync.WaitGroup
	for _, size := range sizes {
		name := strings.Repeat("n", size.bytes)
		for range oversizedCalls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err := call(ctx, conn, name)
				results <- result{size.bytes, status.Code(err), status.Convert(err).Message()}
			}()
		}
	}
	wg.Wait()
	close(results)
	got := make(map[int]map[codes.Code]int)
	for r := range results {
		if got[r.size] == nil {
			got[r.size] = make(map[codes.Code]int)
		}
		got[r.size][r.code]++
		if r.code == codes.InvalidArgument && !strings.Contains(r.msg, "the limit is 1024") {
			t.Errorf("a %d-byte name was refused with %q, which does not give the limit", r.size, r.msg)
		}
	}
	var summary []string
	for _, size := range sizes {
		if got[size.bytes][size.want] != oversizedCalls {
			t.Errorf("names of %d bytes: got %v, want %d × %s", size.bytes, got[size.bytes], oversizedCalls, size.want)
		}
		summary = append(summary, fmt.Sprintf("%s: %s", byteSize(size.bytes), size.want))
	}
	return "names of " + strings.Join(summary, ", ")
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// checkOutOfRangeCounts asks Stream for counts it must refuse.
func checkOutOfRangeCounts(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	for _, count := range []int64{1 << 62, 100001, -1} {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		cs, err := conn.NewStream(ctx, streamDesc, methodStream)
		if err == nil {
			err = cs.SendMsg(&example.StreamingRequest{Count: count})
		}
		if err == nil {
			err = cs.RecvMsg(&example.StreamingResponse{})
		}
		cancel()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("Stream with count %d: %v, want InvalidArgument, out of range", count, err)
		}
	}
}

// hostileStreams are the streams of scenario 8's main phase.
type hostileStreams struct {
	t      *testing.T
	conns  []*severableConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   atomic.Int64
	open   atomic.Int64

	mu   sync.Mutex
	errs []string
	hold chan struct{}
}

const (
	activeStreams   = 500
	idleStreams     = 100
	unreadStreams   = 20
	vanishedStreams = 20
	streamConns     = 10
)

// openHostileStreams opens the streams: the last connection's streams
// vanish mid-stream, the others stay open until closeAll.
func openHostileStreams(t *testing.T, addr string) *hostileStreams {
	t.Helper()
	h := &hostileStreams{t: t, hold: make(chan struct{})}
	for range streamConns {
		h.conns = append(h.conns, dialSeverable(t, addr))
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	t.Cleanup(cancel)
	staying := h.conns[:streamConns-1]
	vanishing := h.conns[streamConns-1]

	newStream := func(conn *severableConn, desc *grpc.StreamDesc, method string) grpc.ClientStream {
		cs, err := conn.NewStream(ctx, desc, method)
		if err != nil {
			t.Fatalf("open %s: %v", method, err)
		}
		h.open.Add(1)
		return cs
	}
	for i := range idleStreams {
		newStream(staying[i%len(staying)], pingPongDesc, methodPingPong)
	}
	for i := range unreadStreams {
		cs := newStream(staying[i%len(staying)], streamDesc, methodStream)
		if err := cs.SendMsg(&example.StreamingRequest{Count: 100000}); err != nil {
			t.Fatal(err)
		}
	}
	// The vanishing client reads a little of each stream, then its
	// connection is cut.
	for i := range vanishedStreams {
		var cs grpc.ClientStream
		var err error
		if i%2 == 0 {
			cs = newStream(vanishing, streamDesc, methodStream)
			if err = cs.SendMsg(&example.StreamingRequest{Count: 100000}); err == nil {
				err = cs.RecvMsg(&example.StreamingResponse{})
			}
		} else {
			cs = newStream(vanishing, pingPongDesc, methodPingPong)
			if err = cs.SendMsg(&example.Ping{Stroke: 1}); err == nil {
				err = cs.RecvMsg(&example.Pong{})
			}
		}
		if err != nil {
			t.Fatalf("start a stream of the vanishing client: %v", err)
		}
	}
	for i := range activeStreams {
		cs := newStream(staying[i%len(staying)], pingPongDesc, methodPingPong)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for n := int64(0); n < 10; n++ {
				var p example.Pong
				err := cs.SendMsg(&example.Ping{Stroke: n})
				if err == nil {
					err = cs.RecvMsg(&p)
				}
				if err == nil && p.Stroke != n {
					err = fmt.Errorf("pong %d for ping %d", p.Stroke, n)
				}
				if err != nil {
					h.mu.Lock()
					h.errs = append(h.errs, err.Error())
					h.mu.Unlock()
					break
				}
			}
			h.done.Add(1)
			<-h.hold // keep the stream open until closeAll
		}()
	}
	vanishing.sever()
	return h
}

func (h *hostileStreams) roundsDone() bool { return h.done.Load() == activeStreams }

func (h *hostileStreams) failures() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.errs)
}

// count is the number of streams opened.
func (h *hostileStreams) count() int { return int(h.open.Load()) }

// closeAll makes every client go: half the connections are cut, the rest
// cancel their streams and close.
func (h *hostileStreams) closeAll() {
	close(h.hold)
	h.wg.Wait()
	for i, c := range h.conns {
		if i%2 == 0 {
			c.sever()
		}
	}
	h.cancel()
	for _, c := range h.conns {
		c.Close()
	}
}

// sampler records the peak of the server's resource use.
type sampler struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	top    usage
}

func startSampler(t *testing.T, conn *grpc.ClientConn, pid int) *sampler {
	s := &sampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			g, heap, err := runtimeStatsErr(conn)
			rss, threads := processStatusQuiet(pid)
			if err == nil {
				s.mu.Lock()
				s.top = usage{max(s.top.goroutines, g), max(s.top.heap, heap), max(s.top.rss, rss), max(s.top.threads, threads)}
				s.mu.Unlock()
			}
			select {
			case <-s.stopCh:
				return
			case <-ticker.C:
			}
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *sampler) peak() usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.top
}

// stop stops sampling and returns the peak.
func (s *sampler) stop() usage {
	select {
	case <-s.stopCh:
	default:
		close(s.stopCh)
	}
	<-s.done
	return s.peak()
}

func runtimeStatsErr(conn *grpc.ClientConn) (goroutines, heap uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var rsp debug.StatsResponse
	if err := conn.Invoke(ctx, methodStats, &debug.StatsRequest{}, &rsp); err != nil {
		return 0, 0, err
	}
	return rsp.Threads, rsp.Memory, nil
}

func processStatusQuiet(pid int) (uint64, int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	return parseProcStatus(string(b))
}
