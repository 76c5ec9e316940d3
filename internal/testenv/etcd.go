package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/etcd/clientv3"
)

// etcdRequestTimeout bounds the connection and request of Keys.
const etcdRequestTimeout = 5 * time.Second

// Etcd is a single-member etcd server started for one test, listening on
// free ports of 127.0.0.1 with its data in the test's temporary directory.
// It can be stopped and started again on the same ports with the same data.
type Etcd struct {
	t          testing.TB
	binary     string
	dataDir    string
	clientPort int
	peerPort   int
	proc       *Process
}

// StartEtcd starts etcd (found in PATH) for the test and waits until it
// reports healthy. The test's cleanup kills it. A missing etcd binary or a
// failed start fails the test.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	binary, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("testenv: start etcd: %v; run `make deps` to install etcd", err)
	}
	e := &Etcd{t: t, binary: binary, dataDir: filepath.Join(t.TempDir(), "etcd")}
	for attempt := 1; ; attempt++ {
		e.clientPort, e.peerPort = FreePort(t), FreePort(t)
		err := e.start()
		if err == nil {
			return e
		}
		if !errors.Is(err, errPortInUse) || attempt == maxPortAttempts {
			t.Fatalf("testenv: start etcd: %v", err)
		}
		t.Logf("testenv: start etcd: %v; retrying on other ports", err)
		if err := os.RemoveAll(e.dataDir); err != nil {
			t.Fatalf("testenv: start etcd: remove data of the failed attempt: %v", err)
		}
	}
}

// Endpoint returns etcd's client address as "127.0.0.1:PORT", the form
// go-micro's --registry_address takes.
func (e *Etcd) Endpoint() string {
	return "127.0.0.1:" + strconv.Itoa(e.clientPort)
}

// Stop stops etcd: SIGTERM, then SIGKILL if it has not exited after a
// bounded wait. Stopping a stopped etcd does nothing.
func (e *Etcd) Stop() {
	e.t.Helper()
	stopGracefully(e.t, e.proc)
}

// Start starts a stopped etcd again on the same ports with the same data
// and waits until it reports healthy; it does nothing if etcd is running.
// Like Stop, it reports to the test that called StartEtcd, so call it from
// that test's goroutine. Another process could take a port while etcd is
// stopped; the failure then says "address already in use".
func (e *Etcd) Start() {
	e.t.Helper()
	if !e.proc.Exited() {
		return
	}
	if err := e.start(); err != nil {
		e.t.Fatalf("testenv: restart etcd on %s: %v", e.Endpoint(), err)
	}
}

// Keys returns the keys under prefix, sorted, read with the etcd v3 client.
// An empty prefix lists every key.
func (e *Etcd) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: etcdRequestTimeout})
	if err != nil {
		t.Fatalf("testenv: list etcd keys under %q: connect to %s: %v", prefix, e.Endpoint(), err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), etcdRequestTimeout)
	defer cancel()
	resp, err := client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("testenv: list etcd keys under %q at %s: %v", prefix, e.Endpoint(), err)
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	sort.Strings(keys)
	return keys
}

// start runs etcd and waits for it to be healthy; on failure it kills it
// and returns an error showing the end of etcd's log.
func (e *Etcd) start() error {
	e.proc = startProcess(e.t, "etcd", e.binary, e.args(), environWithout("ETCD_"))
	if err := waitReady(e.proc, e.healthy); err != nil {
		e.proc.Kill()
		return fmt.Errorf("wait for etcd on %s to be healthy: %w\netcd output:\n%s", e.Endpoint(), err, Tail(e.proc.Output(), logTailLines))
	}
	return nil
}

// args returns etcd's command line. The short heartbeat and election
// timeout let a single member elect itself in about 0.25 s instead of the
// default 1 s; with no peers there is nothing they could destabilise. The
// initial cluster flags are ignored once the data directory exists, which
// is what makes a restart keep its data.
func (e *Etcd) args() []string {
	clientURL := "http://127.0.0.1:" + strconv.Itoa(e.clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(e.peerPort)
	const name = "testenv"
	return []string{
		"--name", name,
		"--data-dir", e.dataDir,
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", name + "=" + peerURL,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", "25",
		"--election-timeout", "250",
		"--logger", "zap",
	}
}

// healthy probes etcd's /health endpoint, which answers {"health":"true"}
// once the member has a leader and serves requests.
func (e *Etcd) healthy() error {
	resp, err := probeClient.Get("http://" + e.Endpoint() + "/health")
	if err != nil {
		return fmt.Errorf("probe etcd health: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return fmt.Errorf("probe etcd health: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("probe etcd health: answer %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// environWithout returns the test's environment without the variables whose
// names start with prefix. etcd reads every ETCD_* variable as a flag and
// refuses to start when one duplicates a flag given on the command line.
func environWithout(prefix string) []string {
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			environ = append(environ, kv)
		}
	}
	return environ
}
