package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/micro/go-micro/v2/client"
	grpcclient "github.com/micro/go-micro/v2/client/grpc"
	"github.com/micro/go-micro/v2/logger"
	"github.com/micro/go-micro/v2/registry"
	etcdregistry "github.com/micro/go-micro/v2/registry/etcd"
	"github.com/micro/go-micro/v2/server"
	grpcserver "github.com/micro/go-micro/v2/server/grpc"
	"github.com/micro/go-plugins/registry/etcd/v2"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
	"github.com/poc-go-micro/poc-go-micro/proto/example"
	"github.com/poc-go-micro/poc-go-micro/server/handler"
)

// serviceName is the name the in-process server registers under.
const serviceName = "poc.bench"

// RoundEnv names the environment variable holding the round number that
// scripts/bench.sh gives each process; odd rounds start every comparison
// with the baseline (see alternate).
const RoundEnv = "POC_BENCH_ROUND"

// shared owns what every benchmark of the binary shares: etcd, Azurite
// and the in-process server, each started by the first benchmark that
// needs it and stopped by TestMain.
var shared = testenv.NewSession("bench")

func TestMain(m *testing.M) {
	// go-micro logs at info level to stdout, which would split the result
	// lines of `go test -bench` (a result is printed in two parts, before
	// and after the benchmark runs). Errors still go to stderr.
	logger.DefaultLogger = logger.NewLogger(logger.WithLevel(logger.ErrorLevel), logger.WithOutput(os.Stderr))
	// etcd and Azurite run in process groups of their own: an interrupted
	// run must stop them itself.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "bench: %v: stopping etcd, Azurite and the server\n", sig)
		shared.Close()
		os.Exit(2)
	}()
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

// lazy is a shared resource started once; a failed start fails every
// benchmark that needs it with the same error.
type lazy[T any] struct {
	once  sync.Once
	value T
	err   error
}

func (l *lazy[T]) get(b *testing.B, start func(tb testing.TB) T) T {
	b.Helper()
	l.once.Do(func() {
		l.err = shared.Run(func(tb testing.TB) { l.value = start(tb) })
	})
	if l.err != nil {
		b.Fatalf("start the shared environment: %v", l.err)
	}
	return l.value
}

var (
	sharedEtcd    lazy[*testenv.Etcd]
	sharedAzurite lazy[*testenv.Azurite]
	sharedRPC     lazy[*rpcEnv]
)

func etcdFor(b *testing.B) *testenv.Etcd {
	return sharedEtcd.get(b, func(tb testing.TB) *testenv.Etcd { return testenv.StartEtcd(tb) })
}

func azuriteFor(b *testing.B) *testenv.Azurite {
	return sharedAzurite.get(b, func(tb testing.TB) *testenv.Azurite { return testenv.StartAzurite(tb) })
}

// rpcEnv is the server both RPC clients call, and the two clients: the
// go-micro one resolves the server through etcd on every call (from its
// selector's cache, as go-micro does), the plain grpc-go one looked the
// address up in the same registry once and keeps one connection.
type rpcEnv struct {
	micro example.ExampleService
	grpc  *grpc.ClientConn
	addr  string
}

func rpcFor(b *testing.B) *rpcEnv {
	e := etcdFor(b)
	return sharedRPC.get(b, func(tb testing.TB) *rpcEnv { return startRPC(tb, e) })
}

// newRegistry returns an etcd registry for the endpoint that logs errors
// only.
func newRegistry(endpoint string) registry.Registry {
	quiet := zap.NewProductionConfig()
	quiet.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	return etcd.NewRegistry(registry.Addrs(endpoint), etcdregistry.LogConfig(&quiet))
}

// startRPC starts the Example server in process (the handler the server
// binary runs, without the binary's flag parsing, which go test's flags
// would break), registered in etcd, and builds both clients.
func startRPC(tb testing.TB, e *testenv.Etcd) *rpcEnv {
	srv := grpcserver.NewServer(
		server.Name(serviceName),
		server.Address("127.0.0.1:0"),
		server.Registry(newRegistry(e.Endpoint())),
	)
	// No limit: a long stream is one of the cases.
	if err := example.RegisterExampleHandler(srv, handler.New(handler.MaxStreamCount(math.MaxInt64))); err != nil {
		tb.Fatalf("register the Example handler: %v", err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatalf("start the server: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			tb.Errorf("stop the server: %v", err)
		}
	})

	reg := newRegistry(e.Endpoint())
	env := &rpcEnv{micro: example.NewExampleService(serviceName, grpcclient.NewClient(client.Registry(reg)))}

	// The plain client resolves the server once, from the same registry.
	services, err := reg.GetService(serviceName)
	if err != nil || len(services) == 0 || len(services[0].Nodes) == 0 {
		tb.Fatalf("look up %s in etcd: %v (services: %v)", serviceName, err, services)
	}
	env.addr = services[0].Nodes[0].Address
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, env.addr, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		tb.Fatalf("dial %s: %v", env.addr, err)
	}
	env.grpc = conn
	tb.Cleanup(func() { conn.Close() })

	// Both clients make one call before measuring: the go-micro selector
	// fills its cache, and both pay their connection set-up here.
	if _, err := env.micro.Call(ctx, &example.Request{Name: "warm-up"}); err != nil {
		tb.Fatalf("go-micro warm-up call: %v", err)
	}
	var rsp example.Response
	if err := conn.Invoke(ctx, "/example.Example/Call", &example.Request{Name: "warm-up"}, &rsp); err != nil {
		tb.Fatalf("grpc-go warm-up call: %v", err)
	}
	return env
}

// uniqueName returns a name no earlier call of this process returned,
// for fresh topics and queues: lowercase letters and digits only, so the
// broker maps it to a plain queue name.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, nameSeq.Add(1))
}

var nameSeq atomic.Int64
