package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// libcontainer starts each step's init as the running binary ("/proc/self/exe
// init"): for the builder, a Go start of ~300 package inits (registries,
// storage, the Dockerfile frontend) that the init never uses: ~2 ms a step
// (perf trace, a step's init execve to its command's: 15.5 → 13.7 ms median).
// A binary built by scripts/build.sh embeds cmd/stepexec-init, the init
// alone (embeddedInit). The builder seals it into a memfd once and hands it
// to each step's init as an inherited file; the init, still the builder's
// binary, execs it from a C constructor before its Go runtime starts
// (initexe_exec.go), and libcontainer's C and Go halves run there instead.
// The sealed memfd is as safe from the step as libcontainer's own copies
// (CVE-2019-5736): nothing can write to it.

// initExeLink is /proc/PID/exe of an init running the small init.
const initExeLink = "/memfd:" + stepinit.ExeName + " (deleted)"

// smallInit is a Runtime's sealed copy of the embedded init, made on
// first use and shared by its steps.
type smallInit struct {
	exe  []byte // the binary; nil: steps' inits are the running binary
	once sync.Once
	file *os.File
	err  error
}

// get returns the sealed init, or nil when there is none to use. A memfd
// that cannot be made costs only time: reported once, not retried.
func (s *smallInit) get() *os.File {
	if len(s.exe) == 0 {
		return nil
	}
	s.once.Do(func() {
		s.file, s.err = stepinit.SealedMemfd(stepinit.ExeName, s.exe, true, fileSource(s.exe))
		if s.err != nil {
			fmt.Fprintf(os.Stderr, "stepexec: warning: every RUN step starts the whole builder as its init (~2 ms more): %v\n", s.err)
		}
	})
	return s.file
}

func (s *smallInit) close() {
	if s.file != nil {
		s.file.Close()
	}
}

// runsSmallInit checks that the step's init (pid, not yet exec'd) given
// the small init runs it.
func runsSmallInit(pid int) error {
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return err
	}
	if link != initExeLink {
		return fmt.Errorf("the step's init runs %s, not the sealed %s", link, stepinit.ExeName)
	}
	return nil
}

// fileSource returns where b, a slice of this binary's read-only data
// (the embedded init), is in the binary's file, so that the kernel copies
// it (sendfile) without this process faulting in the 4 MB: they would
// count in its RSS for the rest of the build. nil when it cannot tell.
func fileSource(b []byte) *stepinit.Source {
	if len(b) == 0 {
		return nil
	}
	addr := uintptr(unsafe.Pointer(&b[0]))
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		start, end, ok := parseRange(fields[0])
		if !ok || addr < start || addr+uintptr(len(b)) > end {
			continue
		}
		off, err := strconv.ParseUint(fields[2], 16, 64)
		if err != nil || fields[4] == "0" {
			return nil // anonymous: not from the file
		}
		return &stepinit.Source{Path: "/proc/self/exe", Offset: int64(off) + int64(addr-start), Check: checkSample(b)}
	}
	return nil
}

func parseRange(s string) (start, end uintptr, ok bool) {
	a, b, found := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	return uintptr(x), uintptr(y), found && err1 == nil && err2 == nil
}

// checkSample verifies a copy against b's first and last bytes (two
// pages of the mapping, not four MB).
func checkSample(b []byte) func(head, tail []byte) bool {
	n := min(len(b), 4096)
	return func(head, tail []byte) bool {
		return bytes.Equal(head, b[:n]) && bytes.Equal(tail, b[len(b)-n:])
	}
}
