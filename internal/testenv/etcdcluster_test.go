package testenv

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/etcd/clientv3"
)

// etcdClusterFailoverTimeout bounds the election after the leader is
// killed; with StartEtcdCluster's timeouts it takes well under a second.
const etcdClusterFailoverTimeout = 5 * time.Second

func TestEtcdClusterSurvivesItsLeaderBeingKilled(t *testing.T) {
	t.Parallel()
	cluster := StartEtcdCluster(t, 3)
	endpoints := strings.Split(cluster.Endpoints(), ",")
	const prefix = "/testenv/cluster/"

	putValue(t, endpoints, prefix+"before", "1")
	leader := cluster.Leader(t)

	cluster.Kill(leader)
	newLeader := cluster.WaitForLeader(t, etcdClusterFailoverTimeout)
	if newLeader == leader {
		t.Fatalf("WaitForLeader after killing leader %d returned it again", leader)
	}
	remaining := slices.Delete(slices.Clone(endpoints), leader, leader+1)
	putValue(t, remaining, prefix+"after", "2")
	if got := getValue(t, remaining, prefix+"before"); got != "1" {
		t.Errorf("value written before the kill, read through %s = %q, want %q", remaining, got, "1")
	}
	want := []string{prefix + "after", prefix + "before"}
	if keys := cluster.Keys(t, prefix); !slices.Equal(keys, want) {
		t.Fatalf("Keys(%q) with member %d killed = %q, want %q", prefix, leader, keys, want)
	}

	cluster.Start(leader)
	// The key written while the member was down proves it caught up; the
	// read is linearizable, so it is served only once the member has.
	if got := getValue(t, endpoints[leader:leader+1], prefix+"after"); got != "2" {
		t.Errorf("value written while member %d was down, read through it alone = %q, want %q", leader, got, "2")
	}
	// All three, the restarted member included, agree on a leader again.
	cluster.WaitForLeader(t, etcdClusterFailoverTimeout)
}

func TestEtcdClusterEndpointsListsEveryMember(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2} {
		t.Run(strconv.Itoa(n)+" members", func(t *testing.T) {
			t.Parallel()
			cluster := StartEtcdCluster(t, n)
			if got := cluster.Members(); got != n {
				t.Errorf("Members() = %d, want %d", got, n)
			}
			endpoints := strings.Split(cluster.Endpoints(), ",")
			if len(endpoints) != n {
				t.Fatalf("Endpoints() = %q, want %d addresses", cluster.Endpoints(), n)
			}
			for _, endpoint := range endpoints {
				if host, _, err := net.SplitHostPort(endpoint); err != nil || host != "127.0.0.1" {
					t.Errorf("Endpoints() lists %q, want 127.0.0.1:PORT", endpoint)
				}
			}
			sorted := slices.Sorted(slices.Values(endpoints))
			if len(slices.Compact(slices.Clone(sorted))) != n {
				t.Errorf("Endpoints() = %q, want %d distinct addresses", cluster.Endpoints(), n)
			}
			// The cluster's own member list must advertise exactly these
			// addresses, so a client given Endpoints reaches every member.
			if advertised := advertisedClientAddresses(t, endpoints); !slices.Equal(advertised, sorted) {
				t.Errorf("Endpoints() = %q, but the members advertise %q", cluster.Endpoints(), advertised)
			}
		})
	}
}

func TestStartEtcdClusterRejectsZeroMembers(t *testing.T) {
	msg := fatalMessage(t, func(tb testing.TB) { StartEtcdCluster(tb, 0) })
	if !strings.Contains(msg, "at least one") {
		t.Errorf("StartEtcdCluster(0) failed with %q, want it to ask for at least one member", msg)
	}
}

// newEtcdClient connects to the etcd members at endpoints; the test's
// cleanup closes the client.
func newEtcdClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: etcdRequestTimeout})
	if err != nil {
		t.Fatalf("connect to etcd at %s: %v", endpoints, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// putValue writes key=value through the etcd members at endpoints.
func putValue(t *testing.T, endpoints []string, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdRequestTimeout)
	defer cancel()
	if _, err := newEtcdClient(t, endpoints).Put(ctx, key, value); err != nil {
		t.Fatalf("put %s through etcd at %s: %v", key, endpoints, err)
	}
}

// getValue reads key through the etcd members at endpoints; it fails the
// test if the key is missing.
func getValue(t *testing.T, endpoints []string, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdRequestTimeout)
	defer cancel()
	resp, err := newEtcdClient(t, endpoints).Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s through etcd at %s: %v", key, endpoints, err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatalf("get %s through etcd at %s: no such key", key, endpoints)
	}
	return string(resp.Kvs[0].Value)
}

// advertisedClientAddresses returns the client addresses the members of
// the etcd cluster at endpoints advertise, as "127.0.0.1:PORT", sorted.
func advertisedClientAddresses(t *testing.T, endpoints []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdRequestTimeout)
	defer cancel()
	resp, err := newEtcdClient(t, endpoints).MemberList(ctx)
	if err != nil {
		t.Fatalf("list the members of etcd at %s: %v", endpoints, err)
	}
	var addresses []string
	for _, member := range resp.Members {
		for _, u := range member.ClientURLs {
			addresses = append(addresses, strings.TrimPrefix(u, "http://"))
		}
	}
	slices.Sort(addresses)
	return addresses
}
