package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/etcd/clientv3"
)

// etcdLeaderTimeout bounds Leader's wait for the members to agree on a
// leader. With the election timeout StartEtcdCluster sets, an election
// takes well under a second; the rest is slack for a machine loaded by
// parallel tests and the race detector.
const etcdLeaderTimeout = 10 * time.Second

// etcdClusterSeq numbers the clusters of this test process, so each gets
// its own --initial-cluster-token.
var etcdClusterSeq atomic.Int64

// EtcdCluster is an etcd cluster of several members started for one test
// on free ports of 127.0.0.1, each with its data in the test's temporary
// directory. Members can be killed and started again with their data.
type EtcdCluster struct {
	t       testing.TB
	binary  string
	token   string
	members []*etcdMember
}

// etcdMember is one member of an EtcdCluster.
type etcdMember struct {
	name       string
	dataDir    string
	clientPort int
	peerPort   int
	proc       *Process
}

// StartEtcdCluster starts n members (n >= 1) as one new cluster and waits
// until every member is healthy; the test's cleanup kills them all.
// Retries on other ports when a port turned out to be taken, as StartEtcd
// does. A missing etcd binary or a failed start fails the test.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testenv: start etcd cluster of %d members: want at least one", n)
	}
	binary, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("testenv: start etcd cluster: %v; run `make deps` to install etcd", err)
	}
	dir := t.TempDir()
	c := &EtcdCluster{t: t, binary: binary, members: make([]*etcdMember, n)}
	for i := range c.members {
		name := "member" + strconv.Itoa(i)
		c.members[i] = &etcdMember{name: name, dataDir: filepath.Join(dir, "etcd-"+name)}
	}
	for attempt := 1; ; attempt++ {
		// A new token per attempt: the members of a failed attempt must
		// never be mistaken for peers of the next one.
		c.token = fmt.Sprintf("testenv-%d-%d", os.Getpid(), etcdClusterSeq.Add(1))
		for _, m := range c.members {
			m.clientPort, m.peerPort = FreePort(t), FreePort(t)
		}
		err := c.start()
		if err == nil {
			return c
		}
		if !errors.Is(err, errPortInUse) || attempt == maxPortAttempts {
			t.Fatalf("testenv: start etcd cluster of %d members: %v", n, err)
		}
		t.Logf("testenv: start etcd cluster of %d members: %v; retrying on other ports", n, err)
		for _, m := range c.members {
			if err := os.RemoveAll(m.dataDir); err != nil {
				t.Fatalf("testenv: start etcd cluster: remove data of the failed attempt: %v", err)
			}
		}
	}
}

// Endpoints returns the members' client addresses,
// "127.0.0.1:P1,127.0.0.1:P2,...", the form go-micro's --registry_address
// takes.
func (c *EtcdCluster) Endpoints() string {
	endpoints := make([]string, len(c.members))
	for i, m := range c.members {
		endpoints[i] = m.endpoint()
	}
	return strings.Join(endpoints, ",")
}

// Members returns the number of members.
func (c *EtcdCluster) Members() int {
	return len(c.members)
}

// Leader returns the index (0..n-1) of the current leader, asking the
// members' status. It waits, bounded, until the running members agree on
// one, so it never returns a leader that has just been killed; it fails the
// test if none is leader in time.
func (c *EtcdCluster) Leader(t testing.TB) int {
	t.Helper()
	return c.WaitForLeader(t, etcdLeaderTimeout)
}

// Kill kills member i with SIGKILL and waits for it to exit. Killing a
// stopped member does nothing. Like Start, it reports to the test that
// called StartEtcdCluster, so call it from that test's goroutine.
func (c *EtcdCluster) Kill(i int) {
	c.t.Helper()
	c.member(i, "kill").proc.Kill()
}

// Start starts a stopped member i again with its data, joining the
// existing cluster, and waits until it is healthy; it does nothing if the
// member is running. It needs a quorum of the other members running to
// become healthy. Another process could take a port while the member is
// stopped; the failure then says "address already in use".
func (c *EtcdCluster) Start(i int) {
	c.t.Helper()
	m := c.member(i, "start")
	if m.running() {
		return
	}
	m.proc = startProcess(c.t, "etcd "+m.name, c.binary, c.args(m), environWithout("ETCD_"))
	if err := m.waitHealthy(); err != nil {
		m.proc.Kill()
		c.t.Fatalf("testenv: restart etcd %s on %s: %v", m.name, m.endpoint(), err)
	}
}

// WaitForLeader waits until the members that are running agree on a
// leader again, bounded by timeout, and returns its index. The leader must
// be one of the running members: right after a leader is killed its
// followers still name it until their election timeout passes.
func (c *EtcdCluster) WaitForLeader(t testing.TB, timeout time.Duration) int {
	t.Helper()
	endpoints := c.runningEndpoints()
	if len(endpoints) == 0 {
		t.Fatalf("testenv: wait for an etcd leader: no member of the cluster is running")
	}
	// Status dials the member it asks, so the client's endpoints only
	// need to be valid.
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: probeTimeout})
	if err != nil {
		t.Fatalf("testenv: wait for an etcd leader: connect to %s: %v", strings.Join(endpoints, ","), err)
	}
	defer client.Close()
	// The deadline also bounds the status requests, so a member that does
	// not answer cannot stretch the wait past timeout.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ticker := time.NewTicker(readyPollInterval)
	defer ticker.Stop()
	for {
		leader, err := c.agreedLeader(ctx, client)
		if err == nil {
			return leader
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: wait for the running etcd members to agree on a leader: none within %v: %v", timeout, err)
		case <-ticker.C:
		}
	}
}

// Keys returns the keys under prefix, sorted, read through any running
// member (like Etcd.Keys). An empty prefix lists every key.
func (c *EtcdCluster) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	endpoints := c.runningEndpoints()
	if len(endpoints) == 0 {
		t.Fatalf("testenv: list etcd keys under %q: no member of the cluster is running", prefix)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: etcdRequestTimeout})
	if err != nil {
		t.Fatalf("testenv: list etcd keys under %q: connect to %s: %v", prefix, strings.Join(endpoints, ","), err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), etcdRequestTimeout)
	defer cancel()
	resp, err := client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("testenv: list etcd keys under %q at %s: %v", prefix, strings.Join(endpoints, ","), err)
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	sort.Strings(keys)
	return keys
}

// start starts every member and waits until all are healthy; on failure it
// kills them all and returns the error of the member that failed first.
func (c *EtcdCluster) start() error {
	for _, m := range c.members {
		m.proc = startProcess(c.t, "etcd "+m.name, c.binary, c.args(m), environWithout("ETCD_"))
	}
	// No member is healthy before a quorum runs, so all are started before
	// any is waited for, and all are waited for at once: a member that
	// exits (its port taken) ends the start now instead of leaving the
	// others to wait the whole readyTimeout for a quorum that cannot form.
	errs := make(chan error, len(c.members))
	for _, m := range c.members {
		go func() { errs <- m.waitHealthy() }()
	}
	var first error
	for range c.members {
		if err := <-errs; err != nil && first == nil {
			first = err
			for _, m := range c.members {
				m.proc.Kill()
			}
		}
	}
	return first
}

// args returns member m's command line. The heartbeat and election timeout
// are short so that a killed leader is replaced in well under a second,
// which the fault tests wait for; a spurious election on a loaded machine
// is harmless because Leader and WaitForLeader wait for agreement. The
// initial cluster flags are ignored once the data directory exists, which
// is what makes Start rejoin the cluster as the same member.
func (c *EtcdCluster) args(m *etcdMember) []string {
	return []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL(),
		"--advertise-client-urls", m.clientURL(),
		"--listen-peer-urls", m.peerURL(),
		"--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", c.initialCluster(),
		"--initial-cluster-state", "new",
		"--initial-cluster-token", c.token,
		"--heartbeat-interval", "25",
		"--election-timeout", "250",
		"--logger", "zap",
	}
}

// initialCluster returns the --initial-cluster value naming every member.
func (c *EtcdCluster) initialCluster() string {
	peers := make([]string, len(c.members))
	for i, m := range c.members {
		peers[i] = m.name + "=" + m.peerURL()
	}
	return strings.Join(peers, ",")
}

// member returns member i, failing the test, with op in the message, if
// there is none.
func (c *EtcdCluster) member(i int, op string) *etcdMember {
	c.t.Helper()
	if i < 0 || i >= len(c.members) {
		c.t.Fatalf("testenv: %s etcd member %d: the cluster has members 0..%d", op, i, len(c.members)-1)
	}
	return c.members[i]
}

// runningEndpoints returns the client addresses of the running members.
func (c *EtcdCluster) runningEndpoints() []string {
	var endpoints []string
	for _, m := range c.members {
		if m.running() {
			endpoints = append(endpoints, m.endpoint())
		}
	}
	return endpoints
}

// agreedLeader asks every running member for its status and returns the
// index of the leader they all name, or an error saying why there is none.
func (c *EtcdCluster) agreedLeader(ctx context.Context, client *clientv3.Client) (int, error) {
	indexOf := map[uint64]int{} // member id -> index, learned from the answers
	leaders := map[uint64]bool{}
	var views []string // "member0 names 8e9e05c52164694d", for the error
	for i, m := range c.members {
		if !m.running() {
			continue
		}
		statusCtx, cancel := context.WithTimeout(ctx, probeTimeout)
		status, err := client.Status(statusCtx, m.endpoint())
		cancel()
		if err != nil {
			return -1, fmt.Errorf("status of %s on %s: %w", m.name, m.endpoint(), err)
		}
		indexOf[status.Header.MemberId] = i
		leaders[status.Leader] = true
		views = append(views, fmt.Sprintf("%s (%x) names %x", m.name, status.Header.MemberId, status.Leader))
	}
	if len(views) == 0 {
		return -1, errors.New("no member is running")
	}
	if len(leaders) != 1 {
		return -1, fmt.Errorf("the members name different leaders: %s", strings.Join(views, ", "))
	}
	var leader uint64
	for id := range leaders {
		leader = id
	}
	if leader == 0 {
		return -1, errors.New("no member has a leader")
	}
	i, ok := indexOf[leader]
	if !ok {
		return -1, fmt.Errorf("the members name a leader that is not running: %s", strings.Join(views, ", "))
	}
	return i, nil
}

// endpoint returns the member's client address as "127.0.0.1:PORT".
func (m *etcdMember) endpoint() string {
	return "127.0.0.1:" + strconv.Itoa(m.clientPort)
}

// clientURL returns the URL the member serves clients on.
func (m *etcdMember) clientURL() string {
	return "http://" + m.endpoint()
}

// peerURL returns the URL the member serves its peers on.
func (m *etcdMember) peerURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(m.peerPort)
}

// running reports whether the member's process is running.
func (m *etcdMember) running() bool {
	return m.proc != nil && !m.proc.Exited()
}

// waitHealthy waits until the member is healthy; the error shows the end
// of its log.
func (m *etcdMember) waitHealthy() error {
	// Etcd's probe reads only the client port, so it serves a member too.
	probe := (&Etcd{clientPort: m.clientPort}).healthy
	if err := waitReady(m.proc, probe); err != nil {
		return fmt.Errorf("wait for etcd %s on %s to be healthy: %w\netcd %s output:\n%s", m.name, m.endpoint(), err, m.name, Tail(m.proc.Output(), logTailLines))
	}
	return nil
}
