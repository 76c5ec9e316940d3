//go:build faults

package faults

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// TestEtcdClusterLeaderKilledServerStaysRegistered is scenario 14: the
// server and the clients use a three-member etcd cluster (on loopback),
// the registry address listing all three members; the server registers
// with --register_interval=2 --register_ttl=6. While client-pingpong runs
// again and again, the cluster's leader is killed with SIGKILL; 10 s later
// it is started again.
//
// Asserted: the server's node is in the registry at every check (every
// 100 ms) from before the kill to the end; every client run, before,
// during and after the election, resolves the server and exits 0; the
// cluster elects another member as leader; the restarted member catches up
// and serves the node too.
func TestEtcdClusterLeaderKilledServerStaysRegistered(t *testing.T) {
	s := newStack(t)
	cluster := testenv.StartEtcdCluster(t, 3)
	s.registry = cluster.Endpoints()
	const (
		interval = 2 * time.Second
		ttl      = 6 * time.Second
		down     = 10 * time.Second
		after    = 10 * time.Second
	)
	s.startServer("server", nil, fmt.Sprintf("--register_interval=%d", int(interval.Seconds())), fmt.Sprintf("--register_ttl=%d", int(ttl.Seconds())))
	prefix := "/micro/registry/" + s.service + "/"
	if keys := cluster.Keys(t, prefix); len(keys) != 1 {
		t.Fatalf("the server's node in the cluster: %q, want one", keys)
	}

	// Clients run one after the other, the whole time.
	type run struct {
		code int
		took time.Duration
		out  string
	}
	var runsMu sync.Mutex
	var runs []run
	stopClients := make(chan struct{})
	clientsDone := make(chan struct{})
	go func() {
		defer close(clientsDone)
		for {
			select {
			case <-stopClients:
				return
			default:
			}
			start := time.Now()
			p := s.start("client-pingpong", nil, "--service="+s.service, "--rounds=1", "--timeout=5s")
			code, err := p.Wait(clientTimeout)
			if err != nil {
				code = -1
			}
			runsMu.Lock()
			runs = append(runs, run{code: code, took: time.Since(start), out: p.Output()})
			runsMu.Unlock()
		}
	}()

	// The registry is watched every 100 ms while the leader is down and
	// after it returns.
	var missing []string
	watch := func(d time.Duration, from time.Time) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if len(cluster.Keys(t, prefix)) != 1 {
				missing = append(missing, seconds(time.Since(from)))
			}
		}
	}
	watch(2*time.Second, time.Now())
	leader := cluster.Leader(t)
	killedAt := time.Now()
	cluster.Kill(leader)
	newLeader := cluster.WaitForLeader(t, 10*time.Second)
	elected := time.Since(killedAt)
	if newLeader == leader {
		t.Fatalf("member %d was killed and is still the leader", leader)
	}
	watch(down-elected, killedAt)
	cluster.Start(leader)
	watch(after, killedAt)
	close(stopClients)
	<-clientsDone

	if len(missing) > 0 {
		t.Errorf("the server's node was missing from the registry %s after the leader was killed", strings.Join(missing, ", "))
	}
	var calls, failed int
	var slowest time.Duration
	for _, r := range runs {
		calls++
		slowest = max(slowest, r.took)
		if r.code != 0 {
			failed++
			if failed <= 3 {
				t.Errorf("a client run failed (exit %d) around the leader's death:\n%s", r.code, tailOf(r.out, 5))
			}
		}
	}
	if calls < 5 {
		t.Errorf("only %d client runs in %s: the clients did not run throughout", calls, 2*time.Second+down+after)
	}
	record(t, outcome{
		scenario: 14, title: "three-member etcd cluster whose leader is killed (SIGKILL) while the server runs and clients call it; restarted 10 s later",
		published: notApplicable, handled: notApplicable, duplicates: notApplicable, poisoned: notApplicable, lost: notApplicable,
		notes: fmt.Sprintf("registry address listing the 3 members; member %d (the leader) killed, member %d elected %s later; the server's node never missing (checked every 100 ms for %s); %d client runs (client-pingpong, each a registry look-up and a call), %d failed, slowest %s",
			leader, newLeader, seconds(elected), seconds(time.Since(killedAt)), calls, failed, slowest.Round(time.Millisecond)),
	})
}
