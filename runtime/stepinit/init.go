package stepinit

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// A step whose filter was captured runs with no seccomp config in
// libcontainer's eyes; its init gets the program instead, as its first
// inherited file (FilterFD), and loads it where libcontainer's init would
// have compiled and loaded one: on its main thread, after the parent's
// go-ahead (procRun) and before it drops capabilities and changes user.
// The init's only seam there is its logging: it logs the procRun it read
// (loadPoint) at debug level, and a logrus hook of ours (filterLoader)
// loads the filter then. Nothing else changes: same program, same loading
// call, same place, same capabilities, no no_new_privs.
//
// It fails closed: before it lets the init exec the step's command, the
// builder checks that the init runs under one seccomp filter more than
// the builder itself, so a libcontainer that logs otherwise makes every
// step fail, never run unfiltered.

const (
	// loadPoint is the log message of libcontainer's init (sync.go) right
	// before it would call InitSeccomp (standard_init_linux.go).
	loadPoint = "read sync type:procRun"
	// LoadLogLevel is the log level an init given a filter must run at:
	// loadPoint's.
	LoadLogLevel = logrus.DebugLevel
	// StepLogLevel is that of the other inits, and of the former once it
	// loaded its filter.
	StepLogLevel = logrus.WarnLevel
	// ExeName is the name of the memfd the small init runs from
	// (cmd/stepexec-init; runtime/initexe.go).
	ExeName = "stepexec-init"
)

// Main is a step's init: it never returns.
func Main() {
	// This is a step's pid 1, child of the builder (see runtime's
	// watcher.go). libcontainer reads this signal before it changes
	// credentials and restores it right before the exec; the round trips
	// with the builder in between fail if the builder died before this.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if err := hideOwnExe(); err != nil {
		fmt.Fprintln(os.Stderr, "stepexec: step init:", err)
		os.Exit(1)
	}
	if err := armFilterLoader(); err != nil {
		fmt.Fprintln(os.Stderr, "stepexec: step init:", err)
		os.Exit(1)
	}
	libcontainer.Init()
}

// hideOwnExe closes on exec the inherited memfd the small init runs from,
// if it does: the step's command must not inherit it. The fd stays open
// until then, so that no other file gets its number, which libcontainer
// passes on as an inherited file.
func hideOwnExe() error {
	for fd := FilterFD; fd <= FilterFD+1; fd++ {
		if IsInitExe(fd) {
			_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
			return err
		}
	}
	return nil
}

// IsInitExe reports whether fd is a sealed memfd named ExeName.
func IsInitExe(fd int) bool {
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	return err == nil && link == "/memfd:"+ExeName+" (deleted)" && sealed(fd)
}

// armFilterLoader arranges for the filter the init was given, if any, to
// be loaded at loadPoint. FilterFD stays open (see hideOwnExe) but closes
// on exec.
func armFilterLoader() error {
	f, ok, err := ReadFilterFile(FilterFD)
	if !ok || err != nil {
		return err
	}
	if _, err := unix.FcntlInt(FilterFD, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return err
	}
	logrus.AddHook(&filterLoader{filter: f})
	return nil
}

// filterLoader is the logrus hook that loads the filter at loadPoint.
// The debug level it needs is only for that: it makes the init's log
// quiet again afterwards (StepLogLevel), and it keeps the init from
// printing "Failed to write to log" on the step's stderr, which logrus
// does when the init logs its failure after it closed its log pipe (at
// debug level it does).
type filterLoader struct {
	filter  *Filter
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
	if err := h.filter.Load(); err != nil {
		// The init must not go on: its parent would see no filter, but
		// stop here anyway.
		fmt.Fprintf(os.Stderr, "stepexec: step init: loading the seccomp filter: %v\n", err)
		os.Exit(1)
	}
	e.Logger.SetLevel(StepLogLevel)
	return nil
}

// quietWriter is a log output whose write errors are dropped.
type quietWriter struct{ w io.Writer }

func (q quietWriter) Write(p []byte) (int, error) {
	_, _ = q.w.Write(p)
	return len(p), nil
}
