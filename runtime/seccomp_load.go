package runtime

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// A step whose filter was captured (seccomp_capture.go) runs with no
// seccomp config in libcontainer's eyes; its init gets the program
// instead, as its first inherited file (filterFD), and loads it where
// libcontainer's init would have compiled and loaded one: on its main
// thread, after the parent's go-ahead (procRun) and before it drops
// capabilities and changes user. The init's only seam there is its
// logging: it logs the procRun it read (loadPoint) at debug level, and a
// logrus hook of ours (filterLoader) loads the filter then. Nothing else
// changes: same program, same loading call, same place, same
// capabilities, no no_new_privs.
//
// It fails closed: before it lets the init exec the step's command, the
// builder checks that the init runs under one seccomp filter more than
// the builder itself (filterLoaded), so a libcontainer that logs otherwise
// makes every step fail, never run unfiltered.

const (
	// filterFD is the precompiled filter's fd in a step's init
	// (libcontainer.Process.ExtraFiles[0]).
	filterFD = 3
	// loadPoint is the log message of libcontainer's init (sync.go) right
	// before it would call InitSeccomp (standard_init_linux.go).
	loadPoint = "read sync type:procRun"
	// filterMagic starts the filter file.
	filterMagic = "stepexec-bpf-v1\n"
)

// initLogLevel is the log level of an init given a filter: loadPoint's;
// stepLogLevel that of the others, and of the former once it loaded it.
var initLogLevel = logrus.DebugLevel

const stepLogLevel = logrus.WarnLevel

// filterFile layout: filterMagic, a uint32 call (1 prctl, 2 seccomp), a
// uint32 flags, then the program. Native byte order: it never leaves the
// machine.
const filterHeaderSize = len(filterMagic) + 8

// sealedFilterFile returns f as a sealed memfd (the step's init cannot
// change what later steps load).
func sealedFilterFile(f *bpfFilter) (*os.File, error) {
	fd, err := unix.MemfdCreate("stepexec-seccomp-filter", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "stepexec-seccomp-filter")
	b := make([]byte, filterHeaderSize, filterHeaderSize+len(f.Program))
	copy(b, filterMagic)
	call := uint32(1)
	if f.ViaSeccomp {
		call = 2
	}
	binary.NativeEndian.PutUint32(b[len(filterMagic):], call)
	binary.NativeEndian.PutUint32(b[len(filterMagic)+4:], f.Flags)
	b = append(b, f.Program...)
	if _, err := file.Write(b); err != nil {
		file.Close()
		return nil, fmt.Errorf("writing the seccomp filter memfd: %w", err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		file.Close()
		return nil, fmt.Errorf("sealing the seccomp filter memfd: %w", err)
	}
	return file, nil
}

// readFilterFile reads the filter from fd, if fd is a filter file: a
// sealed memfd starting with filterMagic.
func readFilterFile(fd int) (*bpfFilter, bool, error) {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_WRITE == 0 {
		return nil, false, nil // not a sealed memfd (or no fd): not ours
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, err
	}
	if st.Size < int64(filterHeaderSize) || st.Size > int64(filterHeaderSize+bpfMaxInsns*sockFilterSize) {
		return nil, false, nil
	}
	b := make([]byte, st.Size)
	if n, err := unix.Pread(fd, b, 0); err != nil || n != len(b) {
		return nil, false, fmt.Errorf("reading the seccomp filter (fd %d): %d bytes, %v", fd, n, err)
	}
	if !bytes.HasPrefix(b, []byte(filterMagic)) {
		return nil, false, nil
	}
	call := binary.NativeEndian.Uint32(b[len(filterMagic):])
	f := &bpfFilter{
		ViaSeccomp: call == 2,
		Flags:      binary.NativeEndian.Uint32(b[len(filterMagic)+4:]),
		Program:    b[filterHeaderSize:],
	}
	if call != 1 && call != 2 {
		return nil, true, fmt.Errorf("seccomp filter file: unknown call %d", call)
	}
	return f, true, f.validate()
}

// armFilterLoader runs in a step's init before libcontainer's: if the
// init was given a filter, it arranges for it to be loaded at loadPoint.
// fd 3 stays open (so that nothing else gets that number, which
// libcontainer passes on as an inherited file) but closes on exec: the
// step's command never sees it.
func armFilterLoader() error {
	f, ok, err := readFilterFile(filterFD)
	if !ok || err != nil {
		return err
	}
	if _, err := unix.FcntlInt(filterFD, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return err
	}
	logrus.AddHook(&filterLoader{filter: f})
	return nil
}

// filterLoader is the logrus hook that loads the filter at loadPoint.
// The debug level it needs is only for that: it makes the init's log
// quiet again afterwards (the level every step's init gets otherwise,
// stepLogLevel), and it keeps the init from printing "Failed to write to
// log" on the step's stderr, which logrus does when the init logs its
// failure after it closed its log pipe (at debug level it does).
type filterLoader struct {
	filter  *bpfFilter
	mu      sync.Mutex // entries may come from several goroutines
	wrapped bool       // the log output is a quietWriter
	done    bool       // the filter is loaded
}

func (h *filterLoader) Levels() []logrus.Level { return []logrus.Level{logrus.DebugLevel} }

func (h *filterLoader) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.wrapped {
		// The first entry comes after libcontainer set its log pipe.
		h.wrapped = true
		e.Logger.SetOutput(quietWriter{e.Logger.Out})
	}
	if h.done || e.Message != loadPoint {
		return nil
	}
	h.done = true
	if err := h.filter.load(); err != nil {
		// The init must not go on: its parent would see no filter, but
		// stop here anyway.
		fmt.Fprintf(os.Stderr, "stepexec: step init: loading the seccomp filter: %v\n", err)
		os.Exit(1)
	}
	e.Logger.SetLevel(stepLogLevel)
	return nil
}

// quietWriter is a log output whose write errors are dropped.
type quietWriter struct{ w io.Writer }

func (q quietWriter) Write(p []byte) (int, error) {
	_, _ = q.w.Write(p)
	return len(p), nil
}

// load loads the filter on the calling thread, which must be the main
// one: the thread that execs the step's command, as libcontainer's init
// does (it runs locked to it).
func (f *bpfFilter) load() error {
	if tid := unix.Gettid(); tid != unix.Getpid() {
		return fmt.Errorf("on thread %d, not the main thread", tid)
	}
	n := len(f.Program) / sockFilterSize
	insns := make([]unix.SockFilter, n)
	for i := range insns {
		b := f.Program[i*sockFilterSize:]
		insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:2]), Jt: b[2], Jf: b[3],
			K: binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	fprog := unix.SockFprog{Len: uint16(n), Filter: &insns[0]}
	var err error
	if f.ViaSeccomp {
		_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
			uintptr(f.Flags), uintptr(unsafe.Pointer(&fprog)))
		if errno != 0 {
			err = errno
		}
	} else {
		err = unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
	}
	goruntime.KeepAlive(insns)
	return err
}

// filterLoaded checks, in the builder, that the step's init (pid, not yet
// exec'd) loaded its filter: it runs in seccomp filter mode under want
// filters (its own plus those it inherited from the builder).
func filterLoaded(pid, want int) error {
	mode, n, err := seccompStatus("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err
	}
	if mode != "2" || n != want {
		return fmt.Errorf("the step's init did not load its seccomp filter (Seccomp: %s, Seccomp_filters: %d, want 2, %d)", mode, n, want)
	}
	return nil
}

// ownFilters is the number of seccomp filters the calling thread runs
// under (0 unless the builder was started under seccomp).
func ownFilters() (int, error) {
	_, n, err := seccompStatus("/proc/thread-self/status")
	return n, err
}

// seccompStatus reads the Seccomp and Seccomp_filters lines of a
// /proc/PID/status file.
func seccompStatus(path string) (mode string, filters int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	nfilters := ""
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Seccomp":
			mode = strings.TrimSpace(v)
		case "Seccomp_filters":
			nfilters = strings.TrimSpace(v)
		}
	}
	if filters, err = strconv.Atoi(nfilters); err != nil {
		return "", 0, fmt.Errorf("%s: no Seccomp_filters line (Linux 5.9 or later has one)", path)
	}
	return mode, filters, nil
}
