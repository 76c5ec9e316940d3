//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/etcd/clientv3"
)

// registration is the server's node in etcd as a client sees it.
type registration struct {
	found   bool
	lease   clientv3.LeaseID
	ttlLeft int64 // seconds
	at      time.Time
}

// registrationOf reads the service's node and the time its lease has left.
// found is false when etcd holds no node or does not answer.
func (s *stack) registrationOf() registration {
	r := registration{at: time.Now()}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{s.etcd.Endpoint()}, DialTimeout: time.Second})
	if err != nil {
		return r
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := client.Get(ctx, "/micro/registry/"+s.service+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		return r
	}
	r.lease = clientv3.LeaseID(resp.Kvs[0].Lease)
	ttl, err := client.TimeToLive(ctx, r.lease)
	if err != nil || ttl.TTL <= 0 {
		return r
	}
	r.found, r.ttlLeft = true, ttl.TTL
	return r
}

// TestEtcdOutageWhileTheServerRuns is scenario 4. The server registers with
// --register_interval=2 --register_ttl=6; etcd is stopped for 20 s (three
// TTLs) and started again on the same ports with the same data.
//
// Asserted: during the outage the server keeps answering direct calls,
// and client-pingpong and client-stream started with --timeout=3s fail
// within that bound plus process start-up, each with one line saying the
// registry cannot be reached. Once etcd is back, clients started at once
// succeed, and for three TTLs the server's node never goes missing and
// its lease never has less than TTL - interval - 1 s left: the server
// renews its registration within its register interval. Last, SIGTERM
// during a second outage, with a registration under way, stops the server
// with status 0 once the deregistration's bounded request has failed,
// rather than hanging on etcd until --shutdown_timeout.
func TestEtcdOutageWhileTheServerRuns(t *testing.T) {
	s := newStack(t)
	const (
		interval     = 2 * time.Second
		ttl          = 6 * time.Second
		outage       = 20 * time.Second
		clientBound  = 3 * time.Second
		processStart = 2 * time.Second // a client binary's start-up, on a loaded machine
		// stopBound bounds a stop during an etcd outage: what it may wait
		// on etcd is a renewal under way, cut short by the stop, then
		// go-micro's pauses between its three tries (2.7 s), perhaps a few
		// times more, as its register loop picks a pending register tick
		// as readily as the stop.
		stopBound = 30 * time.Second
	)
	server := s.startServer("server", nil, fmt.Sprintf("--register_interval=%d", int(interval.Seconds())), fmt.Sprintf("--register_ttl=%d", int(ttl.Seconds())))
	probe := startProber(t, dial(t, serverAddress(t, server)), 200*time.Millisecond, 2*time.Second)
	if r := s.registrationOf(); !r.found {
		t.Fatal("the server is not registered")
	}

	logBefore := len(server.Output())
	stoppedAt := time.Now()
	s.etcd.Stop()
	var failFast []string
	for _, client := range []string{"client-pingpong", "client-stream"} {
		start := time.Now()
		p, code := s.run(client, "--service="+s.service, fmt.Sprintf("--timeout=%s", clientBound))
		took := time.Since(start)
		stderr := strings.TrimSpace(p.Stderr())
		if code == 0 {
			t.Errorf("%s succeeded while etcd was down:\n%s", client, p.Output())
		}
		if took > clientBound+processStart {
			t.Errorf("%s took %s to fail with --timeout=%s", client, took, clientBound)
		}
		if strings.Contains(stderr, "\n") || !strings.Contains(stderr, fmt.Sprintf("cannot look up service %q in the registry", s.service)) || !strings.Contains(stderr, "is the registry reachable?") {
			t.Errorf("%s should fail with one line saying the registry cannot be reached, got:\n%s", client, stderr)
		}
		assertClean(t, client, p)
		failFast = append(failFast, fmt.Sprintf("%s in %s", client, seconds(took)))
	}
	time.Sleep(time.Until(stoppedAt.Add(outage))) // the outage itself
	if server.Exited() {
		t.Fatalf("the server exited during the etcd outage:\n%s", tailOf(server.Output(), 20))
	}
	startedAt := time.Now()
	s.etcd.Start()
	outageLog := server.Output()[logBefore:]

	// A client started as soon as etcd answers finds the server.
	p, code := s.run("client-pingpong", "--service="+s.service, "--rounds=1", fmt.Sprintf("--timeout=%s", clientBound))
	firstClient := time.Since(startedAt)
	if code != 0 {
		t.Errorf("a client started right after etcd came back failed:\n%s", p.Output())
	}

	// The registration is renewed every interval again: watched for three
	// TTLs, the node is always there with most of its TTL left.
	minLeft := int64(ttl.Seconds())
	var missing []string
	for time.Since(startedAt) < 3*ttl {
		r := s.registrationOf()
		switch {
		case !r.found:
			missing = append(missing, seconds(r.at.Sub(startedAt)))
		default:
			minLeft = min(minLeft, r.ttlLeft)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("the server's node was missing from etcd at %s after etcd came back", strings.Join(missing, ", "))
	}
	if floor := int64((ttl - interval - time.Second).Seconds()); minLeft < floor {
		t.Errorf("after etcd came back the server's lease fell to %d s left of its %s TTL: it was not renewed within the %s register interval", minLeft, ttl, interval)
	}
	calls, slowest := probe.check(t, "through the etcd outage")
	registerErrors := len(linesOf(outageLog, "register error"))

	// A stop during an etcd outage is not held up by the registry, even
	// with a registration under way when it comes.
	s.etcd.Stop()
	time.Sleep(2 * interval)
	stoppingAt := time.Now()
	if err := server.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopCode, err := server.Wait(stopTimeout)
	stopTook := time.Since(stoppingAt)
	t.Logf("the server's stop during the etcd outage took %s:\n%s", stopTook, tailOf(server.Output(), 12))
	if err != nil || stopCode != 0 || stopTook > stopBound {
		t.Errorf("SIGTERM while etcd was down: exit %d, %v after %s; want status 0 within %s\n%s", stopCode, err, stopTook, stopBound, tailOf(server.Output(), 10))
	}
	assertClean(t, "server", server)
	record(t, outcome{
		scenario: 4, title: "etcd stopped for 20 s while the server runs (register interval 2 s, TTL 6 s), then restarted",
		published: notApplicable, handled: notApplicable, duplicates: notApplicable, poisoned: notApplicable, lost: notApplicable,
		notes: fmt.Sprintf("clients during the outage failed with one line (%s, --timeout=%s); server kept answering %d direct calls (slowest %s) and logged %d register errors; after etcd returned a new client succeeded %s later and the lease never fell below %d s of its %s TTL in the next %s; SIGTERM during a second outage: exit 0 in %s",
			strings.Join(failFast, ", "), clientBound, calls, slowest.Round(time.Millisecond), registerErrors, seconds(firstClient), minLeft, ttl, 3*ttl, seconds(stopTook)),
	})
}
