package stepinit

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WatcherArg0 is the argv[0] that makes the builder's binary, or the small
// init's, the step watcher.
const WatcherArg0 = "stepexec-step-watcher"

// RunWatcher is the watcher process (runtime's watcher.go): it collects pidfds from fd 3 until
// EOF, forgetting those whose process exited, then SIGKILLs the rest.
func RunWatcher() int {
	const conn = 3
	// fd 4 may be this binary's memfd: not for the steps it kills.
	if IsInitExe(4) {
		unix.Close(4)
	}
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
