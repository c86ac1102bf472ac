package runtime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// libcontainer starts each step's init as the running binary ("/proc/self/exe
// init"): for the builder, a Go start of ~300 package inits (registries,
// storage, the Dockerfile frontend) that the init never uses: ~2 ms a step
// (perf trace, a step's init execve to its command's: 15.5 → 13.7 ms median).
// A binary built by scripts/build.sh carries cmd/stepexec-init, the init
// alone, appended to its file (appendedInit). The builder seals it into a
// memfd once and hands it to each step's init as an inherited file; the
// init, still the builder's binary, execs it from a C constructor before
// its Go runtime starts (initexe_exec.go), and libcontainer's C and Go
// halves run there instead. The sealed memfd is as safe from the step as
// libcontainer's own copies (CVE-2019-5736): nothing can write to it.

// initExeLink is /proc/PID/exe of an init running the small init.
const initExeLink = "/memfd:" + stepinit.ExeName + " (deleted)"

// smallInit is a Runtime's sealed copy of the small init, made on first
// use and shared by its steps.
type smallInit struct {
	// exe, when set (by tests), is the init; else it is the one appended
	// to the running binary, if any.
	exe  []byte
	once sync.Once
	file *os.File
	err  error
}

// get returns the sealed init, or nil when there is none to use. A memfd
// that cannot be made costs only time: reported once, not retried.
func (s *smallInit) get() *os.File {
	s.once.Do(func() {
		var src *stepinit.Source
		if s.exe == nil {
			if src, s.err = appendedInit("/proc/self/exe"); src == nil && s.err == nil {
				return // a binary without one: steps' inits run the binary itself
			}
		}
		if s.err == nil {
			s.file, s.err = stepinit.SealedMemfd(stepinit.ExeName, s.exe, true, src)
		}
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

// The small init is appended to the binary's file after the ELF image,
// outside every segment the kernel maps: none of its 4 MB is in the
// builder's memory (embedded in the binary's data, ~0.8 MB of it was
// mapped, in page-cache folios mapped whole), and the kernel copies it
// into the memfd (sendfile). The file then ends with a trailer: a
// newline, initTrailerMagic, the init's size as 16 hex digits, a newline.
const (
	initTrailerMagic = "STEPEXEC-INIT:"
	initTrailerLen   = int64(1 + len(initTrailerMagic) + 16 + 1)
)

// appendedInit returns where in the file path the appended small init
// is; nil, nil when the file has none.
func appendedInit(path string) (*stepinit.Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < initTrailerLen {
		return nil, err
	}
	trailer := make([]byte, initTrailerLen)
	if _, err := f.ReadAt(trailer, st.Size()-initTrailerLen); err != nil {
		return nil, fmt.Errorf("reading the end of %s: %w", path, err)
	}
	head := "\n" + initTrailerMagic
	if !bytes.HasPrefix(trailer, []byte(head)) || trailer[initTrailerLen-1] != '\n' {
		return nil, nil
	}
	size, err := strconv.ParseInt(string(trailer[len(head):initTrailerLen-1]), 16, 64)
	off := st.Size() - initTrailerLen - size
	if err != nil || size < 4 || off < 0 {
		return nil, fmt.Errorf("%s ends with a damaged small-init trailer %q", path, trailer)
	}
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, off); err != nil || string(magic) != "\x7fELF" {
		return nil, fmt.Errorf("%s: the small init its trailer names at offset %d is no ELF binary (%v)", path, off, err)
	}
	return &stepinit.Source{Path: path, Offset: off, Size: int(size)}, nil
}
