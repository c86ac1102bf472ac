package sigctx

import (
	"syscall"
	"testing"
	"time"
)

func TestFirstSignalCancelsAndIsReported(t *testing.T) {
	ctx, stopped := New()
	if s := stopped(); s != 0 {
		t.Fatalf("stopped() = %v before any signal", s)
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a second signal must not replace the first
	for range 2 {
		if s := stopped(); s != syscall.SIGTERM {
			t.Errorf("stopped() = %v, want SIGTERM", s)
		}
	}
}
