package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// A step must die with its builder, however the builder dies. Two
// mechanisms see to it, since each can fail alone:
//
//   - The step's pid 1 gets a parent-death signal (see init). libcontainer
//     sets one only on its stage-0 process, and pid 1 is cloned from
//     stage 1 with CLONE_PARENT: a child of the builder, but with no
//     signal, and libcontainer's getppid check before the exec compares 0
//     with 0 in a new pid namespace. The kernel clears the signal whenever
//     pid 1's credentials change, though: `exec su nobody -c ...`, a
//     setuid binary exec'd as pid 1, setpriv.
//   - The watcher: a helper process each Runtime starts once, in a session
//     of its own (a kill of the build's process group spares it), holding
//     the far end of a socket from the builder and a pidfd of every
//     running step's pid 1. When the builder dies, the kernel closes the
//     builder's end; the watcher sees EOF, SIGKILLs every pid 1 it holds
//     (their pid namespaces die with them) and exits. Killing every
//     stepexec process kills the watcher too, and then the signal does it.

// watcher is the builder's side of the watcher process.
type watcher struct {
	mu   sync.Mutex
	sock int // our end of the socket; valid while cmd != nil
	cmd  *exec.Cmd
}

// watch hands the process pid (a step's pid 1, not yet waited for, so the
// pid cannot be reused meanwhile) to the watcher, starting it first if
// needed, or again if it died (someone killed it). tag goes on the
// watcher's command line, to tell whose it is. The watcher runs the small
// init's binary (exe), when there is one: a Go start of 4 MB, not of the
// whole builder.
func (w *watcher) watch(pid int, tag string, exe *os.File) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("runtime: pidfd of step process %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	msg := unix.UnixRights(pidfd)
	w.mu.Lock()
	defer w.mu.Unlock()
	for try := 0; ; try++ {
		if w.cmd == nil {
			if err := w.start(tag, exe); err != nil {
				return fmt.Errorf("runtime: starting the step watcher: %w", err)
			}
		}
		err = unix.Sendmsg(w.sock, []byte{0}, msg, nil, unix.MSG_NOSIGNAL)
		if err == nil {
			return nil
		}
		// Only a dead watcher is replaced: closing a live one's socket
		// would make it kill the other steps it watches.
		dead := errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET)
		if !dead || try == 1 {
			return fmt.Errorf("runtime: handing step process %d to the step watcher: %w", pid, err)
		}
		w.stop()
	}
}

func (w *watcher) start(tag string, exe *os.File) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	theirs := os.NewFile(uintptr(fds[1]), "step watcher socket")
	defer theirs.Close()
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{stepinit.WatcherArg0, tag},
		ExtraFiles:  []*os.File{theirs}, // fd 3
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if exe != nil {
		// Inherited as fd 4, so that the fds the child sets up before its
		// exec cannot land on the number the path names.
		cmd.ExtraFiles = append(cmd.ExtraFiles, exe)
		cmd.Path = "/proc/self/fd/4"
	}
	if err := cmd.Start(); err != nil {
		unix.Close(fds[0])
		return err
	}
	w.sock, w.cmd = fds[0], cmd
	return nil
}

// close makes the watcher exit (it kills the steps it still holds: none,
// once every Run returned) and reaps it.
func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stop()
}

func (w *watcher) stop() {
	if w.cmd == nil {
		return
	}
	unix.Close(w.sock)
	// Its exit status says nothing about the build: it was a safety net.
	_ = w.cmd.Wait()
	w.cmd = nil
}
