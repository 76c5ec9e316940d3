package etcdregistry

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coreos/etcd/clientv3"
	"github.com/micro/go-micro/v2/registry"
	"github.com/micro/go-micro/v2/registry/etcd"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

func testService(id string) *registry.Service {
	return &registry.Service{
		Name:      "poc.etcdregistry.test",
		Version:   "1",
		Nodes:     []*registry.Node{{Id: id, Address: "127.0.0.1:1234", Metadata: map[string]string{"k": "v"}}},
		Endpoints: []*registry.Endpoint{{Name: "Example.Call", Metadata: map[string]string{"stream": "false"}}},
	}
}

// leaseOf returns the lease and time to live of the node's key, read with
// a client of the test's own.
func leaseOf(t *testing.T, e *testenv.Etcd, key string) (clientv3.LeaseID, int64) {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		return 0, 0
	}
	id := clientv3.LeaseID(resp.Kvs[0].Lease)
	ttl, err := c.TimeToLive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return id, ttl.TTL
}

func newRegistry(t *testing.T, e *testenv.Etcd, opts ...registry.Option) registry.Registry {
	t.Helper()
	r := NewRegistry()
	if err := r.Init(append([]registry.Option{registry.Addrs(e.Endpoint())}, opts...)...); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegisteredNodesAreWhereGoMicroLooksForThem(t *testing.T) {
	e := testenv.StartEtcd(t)
	r := newRegistry(t, e)
	want := testService("node-1")
	if err := r.Register(want, registry.RegisterTTL(30*time.Second)); err != nil {
		t.Fatal(err)
	}

	// go-micro's own etcd registry, as the clients use it, finds the node
	// with everything it carries.
	plain := etcd.NewRegistry(registry.Addrs(e.Endpoint()))
	got, err := plain.GetService(want.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Nodes) != 1 || !reflect.DeepEqual(got[0].Nodes[0], want.Nodes[0]) || got[0].Version != want.Version || len(got[0].Endpoints) != 1 {
		t.Fatalf("go-micro's registry sees %+v, want %+v", got, want)
	}
	if lease, ttl := leaseOf(t, e, "/micro/registry/poc.etcdregistry.test/node-1"); lease == 0 || ttl < 25 {
		t.Errorf("the node has lease %x with %d s left, want a 30 s lease", lease, ttl)
	}

	if err := r.Deregister(want); err != nil {
		t.Fatal(err)
	}
	if got, err := plain.GetService(want.Name); err != registry.ErrNotFound {
		t.Errorf("after Deregister go-micro's registry sees %+v, %v", got, err)
	}
}

func TestRegisterRenewsItsLeaseAndReplacesAnExpiredOne(t *testing.T) {
	e := testenv.StartEtcd(t)
	r := newRegistry(t, e)
	s := testService("node-2")
	key := "/micro/registry/poc.etcdregistry.test/node-2"
	if err := r.Register(s, registry.RegisterTTL(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	first, _ := leaseOf(t, e, key)
	time.Sleep(1500 * time.Millisecond)
	if err := r.Register(s, registry.RegisterTTL(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if lease, ttl := leaseOf(t, e, key); lease != first || ttl < 2 {
		t.Errorf("after a renewal: lease %x with %d s left, want the same lease %x renewed to 3 s", lease, ttl, first)
	}

	// A changed node is written again under the same lease.
	s.Nodes[0].Metadata["k"] = "changed"
	if err := r.Register(s, registry.RegisterTTL(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := r.GetService(s.Name)
	if err != nil || got[0].Nodes[0].Metadata["k"] != "changed" {
		t.Errorf("after a change the registry holds %+v, %v", got, err)
	}

	// The lease expires (say, while etcd could not be reached): the next
	// Register writes the node under a new one.
	testenv.WaitFor(t, 10*time.Second, "the lease to expire", func() bool { l, _ := leaseOf(t, e, key); return l == 0 })
	if err := r.Register(s, registry.RegisterTTL(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if lease, _ := leaseOf(t, e, key); lease == 0 || lease == first {
		t.Errorf("after the lease expired: lease %x, want a new one (old %x)", lease, first)
	}
}

func TestRegisterIsBoundedWhileEtcdIsDownAndResumesWhenItIsBack(t *testing.T) {
	e := testenv.StartEtcd(t)
	const timeout = 3 * time.Second
	r := newRegistry(t, e, registry.Timeout(timeout))
	s := testService("node-3")
	if err := r.Register(s, registry.RegisterTTL(60*time.Second)); err != nil {
		t.Fatal(err)
	}

	e.Stop()
	time.Sleep(3 * time.Second) // let the client's reconnect backoff grow
	start := time.Now()
	err := r.Register(s, registry.RegisterTTL(60*time.Second))
	if took := time.Since(start); err == nil || took > timeout+time.Second {
		t.Fatalf("Register with etcd down: %v after %s, want an error within the %s timeout", err, took, timeout)
	}
	// An immediate retry, as go-micro's server makes, and a deregistration
	// right after, as in a stop, fail at once.
	start = time.Now()
	if err := r.Register(s, registry.RegisterTTL(60*time.Second)); err == nil || !strings.Contains(err.Error(), "etcd unreachable") {
		t.Errorf("retry with etcd down: %v, want it to say etcd is unreachable", err)
	}
	if err := r.Deregister(s); err == nil {
		t.Error("Deregister with etcd down succeeded")
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("the retry and the deregistration took %s, want them to fail at once", took)
	}

	// A Register waiting when etcd returns completes within about a second
	// of its return, however long etcd was away.
	done := make(chan error, 1)
	time.Sleep(retryWindow)
	go func() { done <- r.Register(s, registry.RegisterTTL(60*time.Second)) }()
	time.Sleep(200 * time.Millisecond)
	e.Start()
	back := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Register waiting while etcd came back: %v", err)
		}
		if took := time.Since(back); took > 2*maxReconnectDelay {
			t.Errorf("Register completed %s after etcd came back, want within about %s", took, maxReconnectDelay)
		}
	case <-time.After(timeout + time.Second):
		t.Fatal("Register did not return after etcd came back")
	}
}

func TestAStopCutsARegistrationShort(t *testing.T) {
	e := testenv.StartEtcd(t)
	stop, stopping := context.WithCancel(context.Background())
	r := newRegistry(t, e, registry.Timeout(10*time.Second), StopRegisteringWhen(stop))
	s := testService("node-4")
	if err := r.Register(s, registry.RegisterTTL(60*time.Second)); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	done := make(chan error, 1)
	go func() { done <- r.Register(s, registry.RegisterTTL(60*time.Second)) }()
	time.Sleep(500 * time.Millisecond)
	stopping()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Register succeeded with etcd down")
		}
	case <-time.After(time.Second):
		t.Fatal("Register under way did not give up when the stop came")
	}
	start := time.Now()
	if err := r.Register(s, registry.RegisterTTL(60*time.Second)); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Register after the stop: %v, want it to fail saying the server is stopping", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Register after the stop took %s", took)
	}
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		addrs []string
		want  []string
	}{
		{nil, []string{"127.0.0.1:2379"}},
		{[]string{"10.0.0.1"}, []string{"10.0.0.1:2379"}},
		{[]string{"etcd:2380", "", "10.0.0.2:2379"}, []string{"etcd:2380", "10.0.0.2:2379"}},
		{[]string{"[::1]:2379"}, []string{"[::1]:2379"}},
	}
	for _, tt := range tests {
		if got := endpoints(tt.addrs); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("endpoints(%q) = %q, want %q", tt.addrs, got, tt.want)
		}
	}
}
