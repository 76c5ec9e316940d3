package testenv

import (
	"net"
	"sync"
	"testing"
)

// maxFreePortAttempts bounds the search for a port not handed out before.
const maxFreePortAttempts = 50

// handedOutPorts remembers every port FreePort returned in this test process,
// so two servers of the same test never get the same port even if the kernel
// offers it twice.
var handedOutPorts = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier FreePort call of this test process returned. Another
// process can still take it before the caller binds it; StartEtcd and
// StartAzurite retry with new ports when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOutPorts.Lock()
	defer handedOutPorts.Unlock()
	for range maxFreePortAttempts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: find a free port: listen on 127.0.0.1:0: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			t.Fatalf("testenv: find a free port: close listener on port %d: %v", port, err)
		}
		if !handedOutPorts.ports[port] {
			handedOutPorts.ports[port] = true
			return port
		}
	}
	t.Fatalf("testenv: find a free port: %d attempts only returned ports already handed out", maxFreePortAttempts)
	return 0
}
