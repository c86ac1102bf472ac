package runtime

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// TestWatcherKillsWhenBuilderDies hands the watcher two processes, one of
// which exits, then closes the builder's end of the socket as the kernel
// does when the builder dies: the watcher must SIGKILL the other one and
// exit, from a session of its own (a kill of the builder's process group
// must not take it along).
func TestWatcherKillsWhenBuilderDies(t *testing.T) {
	small, err := stepinit.SealedMemfd(stepinit.ExeName, smallInitBinary(t), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	for name, exe := range map[string]*os.File{"this binary": nil, "the small init": small} {
		t.Run(name, func(t *testing.T) { watcherKillsWhenBuilderDies(t, exe) })
	}
}

func watcherKillsWhenBuilderDies(t *testing.T, exe *os.File) {
	victim := exec.Command("sleep", "60")
	short := exec.Command("sleep", "0.05")
	for _, c := range []*exec.Cmd{victim, short} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
	}
	var w watcher
	for _, c := range []*exec.Cmd{short, victim} {
		if err := w.watch(c.Process.Pid, t.Name(), exe); err != nil {
			t.Fatal(err)
		}
	}
	if err := short.Wait(); err != nil {
		t.Fatalf("the short process: %v", err)
	}
	if sid, err := unix.Getsid(w.cmd.Process.Pid); err != nil || sid != w.cmd.Process.Pid {
		t.Errorf("the watcher's session is %d (%v), want its own (%d)", sid, err, w.cmd.Process.Pid)
	}
	if exe != nil {
		if err := runsSmallInit(w.cmd.Process.Pid); err != nil {
			t.Errorf("the watcher: %v", err)
		}
	}

	unix.Close(w.sock)
	waited := make(chan error, 1)
	go func() { waited <- victim.Wait() }()
	select {
	case err := <-waited:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the watched process ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watched process still runs 5 s after the builder's end closed")
	}
	if err := w.cmd.Wait(); err != nil {
		t.Errorf("the watcher: %v", err)
	}
}

// TestWatcherRestarted kills the watcher: the next step handed over starts
// a new one, which does the job.
func TestWatcherRestarted(t *testing.T) {
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	var w watcher
	if err := w.watch(victim.Process.Pid, t.Name(), nil); err != nil {
		t.Fatal(err)
	}
	first := w.cmd.Process.Pid
	w.cmd.Process.Kill()
	w.cmd.Process.Wait() // reaped here, so the retry's Wait returns at once
	if err := w.watch(victim.Process.Pid, t.Name(), nil); err != nil {
		t.Fatalf("after the watcher died: %v", err)
	}
	if w.cmd.Process.Pid == first {
		t.Fatal("the dead watcher was not replaced")
	}
	w.close()
	if err := victim.Wait(); err == nil {
		t.Error("the new watcher did not kill the watched process")
	}
}
