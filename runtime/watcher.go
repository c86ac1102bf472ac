package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

// watcherArg0 is the argv[0] that makes the binary the watcher (see init).
const watcherArg0 = "stepexec-step-watcher"

// watcher is the builder's side of the watcher process.
type watcher struct {
	mu   sync.Mutex
	sock int // our end of the socket; valid while cmd != nil
	cmd  *exec.Cmd
}

// watch hands the process pid (a step's pid 1, not yet waited for, so the
// pid cannot be reused meanwhile) to the watcher, starting it first if
// needed, or again if it died (someone killed it). tag goes on the
// watcher's command line, to tell whose it is.
func (w *watcher) watch(pid int, tag string) error {
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
			if err := w.start(tag); err != nil {
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

func (w *watcher) start(tag string) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	theirs := os.NewFile(uintptr(fds[1]), "step watcher socket")
	defer theirs.Close()
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{watcherArg0, tag},
		ExtraFiles:  []*os.File{theirs}, // fd 3
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
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

// runWatcher is the watcher process: it collects pidfds from fd 3 until
// EOF, forgetting those whose process exited, then SIGKILLs the rest.
func runWatcher() int {
	const conn = 3
	if name, err := unix.BytePtrFromString("stepexec-watch"); err == nil {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	}
	var inits []int
	for {
		fds := []unix.PollFd{{Fd: conn, Events: unix.POLLIN}}
		for _, p := range inits {
			fds = append(fds, unix.PollFd{Fd: int32(p), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			break
		}
		var running []int
		for i, p := range inits {
			if fds[i+1].Revents != 0 { // a pidfd polls readable once its process exited
				unix.Close(p)
			} else {
				running = append(running, p)
			}
		}
		inits = running
		if fds[0].Revents == 0 {
			continue
		}
		pidfd, err := receivePidfd(conn)
		if err != nil || pidfd < 0 {
			break // EOF: the builder is gone
		}
		inits = append(inits, pidfd)
	}
	for _, p := range inits {
		_ = unix.PidfdSendSignal(p, unix.SIGKILL, nil, 0)
	}
	return 0
}

// receivePidfd reads one message from conn: the pidfd it carries, or -1
// at EOF.
func receivePidfd(conn int) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(conn, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, err
		}
		if n == 0 && oobn == 0 {
			return -1, nil
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return -1, fmt.Errorf("step watcher: bad message: %v", err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return -1, fmt.Errorf("step watcher: bad message: %v", err)
		}
		return fds[0], nil
	}
}
