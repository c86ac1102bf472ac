package userns

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The rootless process the user starts (P) waits for the child it
// re-exec'd into the outer namespace (C), which must die with P: P's fork
// gives C a parent-death signal. The kernel keeps that signal per thread,
// though: execve from any thread but the main one (and a Go program execs
// from whichever thread runs the goroutine) leaves the new image with
// none, and a change of credentials clears it. So every re-exec in C
// passes P's pid on in parentPIDEnv, and the new image arms the signal
// again first thing (init, on the main thread) and checks that P did not
// die before that.
const parentPIDEnv = "_STEPEXEC_PARENT_PID"

// watchedParent is the pid of the process whose death kills this one (0:
// none, e.g. the process the user started, or real root).
var watchedParent int

func init() {
	if err := rearmParentDeath(); err != nil {
		fmt.Fprintln(os.Stderr, "stepexec:", err)
		os.Exit(1)
	}
}

// rearmParentDeath arms SIGKILL for the death of the parent named by
// parentPIDEnv, if set, and dies at once if that parent is already gone.
// Package init runs on the main thread, whose signal lasts as long as the
// process: Go never ends its main thread.
func rearmParentDeath() error {
	v, ok := os.LookupEnv(parentPIDEnv)
	if !ok {
		return nil
	}
	// Only our own re-execs are to inherit it, not steps or helpers.
	os.Unsetenv(parentPIDEnv)
	ppid, err := strconv.Atoi(v)
	if err != nil || ppid <= 0 {
		return fmt.Errorf("bad %s=%q", parentPIDEnv, v)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("arming the parent-death signal: %w", err)
	}
	if os.Getppid() != ppid {
		// Reparented: the parent died before the signal was armed.
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
	}
	watchedParent = ppid
	return nil
}

// watchMe makes the child this process is about to start into the outer
// namespace die with it: the child re-arms its parent-death signal after
// each of its re-execs (see parentPIDEnv).
func watchMe() error {
	return os.Setenv(parentPIDEnv, strconv.Itoa(os.Getpid()))
}

// keepWatch returns env for a re-exec of this process that keeps the
// parent-death signal it has.
func keepWatch(env []string) []string {
	if watchedParent == 0 {
		return env
	}
	return append(env, parentPIDEnv+"="+strconv.Itoa(watchedParent))
}
