//go:build faults

package faults

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	debug "github.com/micro/go-micro/v2/debug/service/proto"
	"google.golang.org/grpc"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
)

// The Example service's and go-micro's debug handler's gRPC methods. The
// go-micro server routes by the last element of the service name, so a
// plain grpc-go client reaches them under these paths.
const (
	methodCall     = "/example.Example/Call"
	methodStream   = "/example.Example/Stream"
	methodPingPong = "/example.Example/PingPong"
	methodStats    = "/Debug/Stats"
)

var listeningLine = regexp.MustCompile(`Server \[grpc\] Listening on (\S+)`)

// serverAddress returns the address the server process listens on.
func serverAddress(t *testing.T, p *testenv.Process) string {
	t.Helper()
	m := listeningLine.FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("the server did not log its address:\n%s", tailOf(p.Output(), 20))
	}
	return m[1]
}

// dial opens a plain gRPC connection to addr, closed when the test ends.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	conn, err := grpc.DialContext(ctx, addr, append([]grpc.DialOption{grpc.WithInsecure(), grpc.WithBlock()}, opts...)...)
	if err != nil {
		t.Fatalf("dial the server at %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call makes one Example.Call.
func call(ctx context.Context, conn *grpc.ClientConn, name string, opts ...grpc.CallOption) (string, error) {
	var rsp example.Response
	if err := conn.Invoke(ctx, methodCall, &example.Request{Name: name}, &rsp, opts...); err != nil {
		return "", err
	}
	return rsp.Msg, nil
}

// runtimeStats asks the server's go-micro debug handler for its goroutine
// count and heap bytes in use.
func runtimeStats(t *testing.T, conn *grpc.ClientConn) (goroutines, heap uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var rsp debug.StatsResponse
	if err := conn.Invoke(ctx, methodStats, &debug.StatsRequest{}, &rsp); err != nil {
		t.Fatalf("Debug.Stats: %v", err)
	}
	return rsp.Threads, rsp.Memory
}

// prober calls Example.Call on a server every interval until stopped,
// recording how the calls went: proof that the server keeps answering
// while something else happens.
type prober struct {
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	ok, failed int
	errs       []string
	slowest    time.Duration
}

// startProber starts probing over conn; each call is bounded by timeout.
// The test's cleanup stops it.
func startProber(t *testing.T, conn *grpc.ClientConn, interval, timeout time.Duration) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for n := 0; ; n++ {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			start := time.Now()
			msg, err := call(ctx, conn, fmt.Sprintf("probe %d", n))
			elapsed := time.Since(start)
			cancel()
			p.mu.Lock()
			switch {
			case err != nil:
				p.failed++
				p.errs = append(p.errs, fmt.Sprintf("%s after %s, at %s", err, elapsed.Round(time.Millisecond), start.Format("15:04:05.000")))
			case msg != fmt.Sprintf("Hello probe %d", n):
				p.failed++
				p.errs = append(p.errs, "wrong answer "+msg)
			default:
				p.ok++
				p.slowest = max(p.slowest, elapsed)
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-ticker.C:
			}
		}
	}()
	t.Cleanup(p.finish)
	return p
}

// finish stops the prober and waits for its last call.
func (p *prober) finish() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// check stops the prober and fails the test unless every call succeeded,
// returning how many there were and the slowest.
func (p *prober) check(t *testing.T, during string) (calls int, slowest time.Duration) {
	t.Helper()
	p.finish()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed > 0 {
		t.Errorf("%d of %d Example.Call probes failed %s, e.g. %q", p.failed, p.ok+p.failed, during, p.errs[:min(3, len(p.errs))])
	}
	if p.ok == 0 {
		t.Errorf("no Example.Call probe succeeded %s", during)
	}
	return p.ok + p.failed, p.slowest
}
