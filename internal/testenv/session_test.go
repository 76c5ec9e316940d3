package testenv

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestSessionRunReturnsTheFailureAndCloseRunsCleanupsInReverse(t *testing.T) {
	s := NewSession("test")
	var order []string
	dir := ""
	err := s.Run(func(tb testing.TB) {
		dir = tb.TempDir()
		tb.Cleanup(func() { order = append(order, "first") })
		tb.Cleanup(func() { order = append(order, "second") })
		tb.Fatalf("stop at %d", 1)
		order = append(order, "after Fatalf")
	})
	if err == nil || err.Error() != "stop at 1" {
		t.Errorf("Run = %v, want the Fatalf message", err)
	}
	if !s.Failed() {
		t.Error("Failed() = false after Fatalf")
	}
	if err := s.Run(func(tb testing.TB) {}); err != nil {
		t.Errorf("a later clean Run = %v, want nil", err)
	}
	if err := s.Run(func(tb testing.TB) { tb.Skip("not here") }); !errors.Is(err, ErrSessionSkipped) {
		t.Errorf("Run with Skip = %v, want ErrSessionSkipped", err)
	}
	s.Close()
	s.Close()
	if got := strings.Join(order, ","); got != "second,first" {
		t.Errorf("cleanups ran as %q, want second,first", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir %s still there after Close: %v", dir, err)
	}
}
