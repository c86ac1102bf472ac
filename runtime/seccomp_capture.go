package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/debug"
	"syscall"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// libcontainer compiles a step's seccomp profile with libseccomp, and
// patches the result (runc's -ENOSYS stub), inside every step's init:
// ~25 ms of CPU for a program that is the same in every step. The
// capture helper runs that very code (lcseccomp.InitSeccomp) once, on the
// same config as it reaches the init (a JSON round trip), and takes the
// program from the system call that would have loaded it: a filter of its
// own sends seccomp(2) and prctl(2) from that thread to a listener thread
// (seccomp user notification), which reads the program out of the caller's
// memory and fails the call. Steps' inits then load the captured program
// as it is (see seccomp_load.go).

// captureArg0 is the argv[0] that makes the binary the capture helper
// (see init).
const captureArg0 = "stepexec-seccomp-capture"

// captureTimeout bounds the helper, which only compiles a filter.
const captureTimeout = 30 * time.Second

// captureFilter returns the filter libcontainer's init would load for cfg,
// computed by the capture helper.
func captureFilter(cfg *configs.Seccomp) (*stepinit.Filter, error) {
	in, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), captureTimeout)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{captureArg0}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &stderr
	// The signal is tied to the thread that forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	goruntime.LockOSThread()
	err = cmd.Run()
	goruntime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("seccomp capture helper: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var f stepinit.Filter
	if err := json.Unmarshal(out.Bytes(), &f); err != nil {
		return nil, fmt.Errorf("seccomp capture helper's output: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("seccomp capture helper: %w", err)
	}
	return &f, nil
}

// runCaptureHelper is the capture helper process: a configs.Seccomp in
// JSON on stdin, the stepinit.Filter in JSON on stdout.
func runCaptureHelper() int {
	var cfg configs.Seccomp
	if err := json.NewDecoder(os.Stdin).Decode(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "reading the seccomp config:", err)
		return 1
	}
	f, err := captureInitSeccomp(&cfg)
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// captureInitSeccomp runs lcseccomp.InitSeccomp(cfg) with its loading
// call intercepted. Only for a process of its own: the calling thread
// keeps the intercepting filter.
func captureInitSeccomp(cfg *configs.Seccomp) (*stepinit.Filter, error) {
	// The filtered thread blocks in its system call while it holds its P
	// (unix.RawSyscall): the listener goroutine needs another P, and a
	// stop-the-world (a GC) would wait for the blocked thread forever.
	debug.SetGCPercent(-1)
	if goruntime.GOMAXPROCS(0) < 2 {
		goruntime.GOMAXPROCS(2)
	}
	// libseccomp probes the kernel with seccomp(2) calls once per process:
	// let it do so unfiltered, as it does in an init.
	if _, err := libseccomp.GetAPI(); err != nil {
		return nil, fmt.Errorf("libseccomp: %w", err)
	}
	goruntime.LockOSThread() // for good: this thread keeps the filter
	listener, err := installListener()
	if err != nil {
		return nil, fmt.Errorf("installing the intercepting seccomp filter: %w", err)
	}
	got := make(chan captureResult, 1)
	go func() { got <- listen(listener) }()
	_, initErr := lcseccomp.InitSeccomp(cfg)
	if !errors.Is(initErr, unix.ECANCELED) {
		// It failed before its loading call, or loaded something.
		return nil, fmt.Errorf("libcontainer's InitSeccomp was not stopped at its loading call: %v", initErr)
	}
	r := <-got
	return r.filter, r.err
}

// captureAuditArch is this architecture's AUDIT_ARCH_*; 0 where the
// capture is not supported (the steps then compile their filter).
var captureAuditArch = map[string]uint32{
	"amd64": unix.AUDIT_ARCH_X86_64,
	"arm64": unix.AUDIT_ARCH_AARCH64,
}[goruntime.GOARCH]

// installListener installs on the calling thread a filter that sends
// every native seccomp(2) and prctl(2) call to the returned listener fd,
// and allows everything else.
func installListener() (int, error) {
	if captureAuditArch == 0 {
		return -1, fmt.Errorf("not supported on %s", goruntime.GOARCH)
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: captureAuditArch, SkipFalse: 3},
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SECCOMP, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_PRCTL, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF},
	})
	if err != nil {
		return -1, err
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	fd, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	goruntime.KeepAlive(filter)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// seccompNotif and seccompNotifResp are the kernel's struct seccomp_notif
// and struct seccomp_notif_resp.
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type captureResult struct {
	filter *stepinit.Filter
	err    error
}

// listen answers the intercepted calls until it has seen the one that
// loads a filter: it copies that call's program and fails the call
// (ECANCELED). Every other call (libseccomp's probes pass a NULL program;
// other prctl options) runs as it would have.
func listen(fd int) captureResult {
	// Closing it fails a call still waiting (ENOSYS), should we give up.
	defer unix.Close(fd)
	for {
		var n seccompNotif
		if err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return captureResult{err: fmt.Errorf("receiving a seccomp notification: %w", err)}
		}
		f, isLoad, err := loadingCall(&n)
		resp := seccompNotifResp{ID: n.ID}
		if isLoad {
			resp.Error = -int32(unix.ECANCELED)
		} else {
			resp.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		}
		sendErr := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp))
		switch {
		case err != nil:
			return captureResult{err: err}
		case errors.Is(sendErr, unix.ENOENT):
			// The caller was interrupted by a signal and will restart the
			// call: a new notification comes.
			continue
		case sendErr != nil:
			return captureResult{err: fmt.Errorf("answering a seccomp notification: %w", sendErr)}
		case isLoad:
			return captureResult{filter: f}
		}
	}
}

// loadingCall reports whether n is a call that loads a filter, and if so
// reads the filter from the caller, which is this process.
func loadingCall(n *seccompNotif) (*stepinit.Filter, bool, error) {
	var f stepinit.Filter
	switch {
	case n.Nr == unix.SYS_SECCOMP && n.Args[0] == unix.SECCOMP_SET_MODE_FILTER:
		f.ViaSeccomp, f.Flags = true, uint32(n.Args[1])
	case n.Nr == unix.SYS_PRCTL && n.Args[0] == unix.PR_SET_SECCOMP && n.Args[1] == unix.SECCOMP_MODE_FILTER:
	default:
		return nil, false, nil
	}
	if n.Args[2] == 0 {
		return nil, false, nil // a probe: the kernel answers EFAULT
	}
	var hdr [16]byte // struct sock_fprog: u16 len, padding, pointer
	if err := readOwnMemory(uintptr(n.Args[2]), hdr[:]); err != nil {
		return nil, true, fmt.Errorf("reading the struct sock_fprog: %w", err)
	}
	count := binary.NativeEndian.Uint16(hdr[0:2])
	insns := uintptr(binary.NativeEndian.Uint64(hdr[8:16]))
	f.Program = make([]byte, int(count)*stepinit.SockFilterSize)
	if err := readOwnMemory(insns, f.Program); err != nil {
		return nil, true, fmt.Errorf("reading the seccomp program: %w", err)
	}
	return &f, true, f.Validate()
}

// readOwnMemory copies len(buf) bytes at addr of this process's memory
// (an address the kernel handed over as a number).
func readOwnMemory(addr uintptr, buf []byte) error {
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	n, err := unix.ProcessVMReadv(os.Getpid(), local, []unix.RemoteIovec{{Base: addr, Len: len(buf)}}, 0)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
