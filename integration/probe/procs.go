package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// userns SECRET: a nested user namespace would give the step every
// capability over namespaces of its own (docker's profile refuses it);
// if one is made, its child retries the other escapes and reports.
func nestedUserns(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: userns SECRET")
	}
	var a attempts
	cmd := exec.Command("/proc/self/exe", "userns", "userns-inner", args[0])
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.Output()
	if err == nil {
		a.escape("clone(CLONE_NEWUSER) succeeded; inside: %s", strings.TrimSpace(string(out)))
	} else {
		a.try("clone(CLONE_NEWUSER)", err, unix.EPERM)
	}
	runtime.LockOSThread() // the thread stays locked: unshare changes it
	a.try("unshare(CLONE_NEWUSER)", unix.Unshare(unix.CLONE_NEWUSER), unix.EPERM)
	return a.verdict()
}

// userns-inner SECRET: run in a nested user namespace; retries with its
// capabilities and prints what got through.
func usernsInner(args []string) verdict {
	var a attempts
	a.try("mknod block", unix.Mknod("/tmp/stepexec-probe-ns-sda", unix.S_IFBLK|0o600, int(unix.Mkdev(8, 0))), unix.EPERM)
	readSecret(&a, "/proc/1/root", "/proc/1/root"+args[0])
	a.try("mount tmpfs", unix.Mount("none", "/mnt", "tmpfs", 0, ""), unix.EPERM)
	v := a.verdict()
	fmt.Println(v.detail)
	return verdict{}
}

// ptrace PID: attaching to a host process.
func ptraceAttach(args []string) verdict {
	pid, err := pidArg(args)
	if err != nil {
		return unclear("%v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var a attempts
	err = unix.PtraceAttach(pid)
	if err == nil {
		unix.PtraceDetach(pid)
	}
	a.try("PTRACE_ATTACH", err, unix.ESRCH, unix.EPERM)
	return a.verdict()
}

// signal PID: kill(2) on a host process (SIGKILL: the host sees if it died).
func signalProcess(args []string) verdict {
	pid, err := pidArg(args)
	if err != nil {
		return unclear("%v", err)
	}
	var a attempts
	a.try("signal 0", unix.Kill(pid, 0), unix.ESRCH, unix.EPERM)
	a.try("SIGKILL", unix.Kill(pid, unix.SIGKILL), unix.ESRCH, unix.EPERM)
	return a.verdict()
}

// find-process MARKER PID: a host process, by pid and by its command line.
func findProcess(args []string) verdict {
	if len(args) != 2 {
		return unclear("usage: find-process MARKER PID")
	}
	var a attempts
	_, err := os.Stat("/proc/" + args[1])
	a.try("/proc/PID", err, unix.ENOENT)
	if n := countMarked(args[0]); n > 0 {
		a.escape("its command line is in /proc")
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	a.refuse("not in /proc, which lists %d process(es): the step's", len(pids))
	return a.verdict()
}

func pidArg(args []string) (int, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("want one PID argument")
	}
	return strconv.Atoi(args[0])
}

// fds: the step must hold no descriptor but stdin (/dev/null), stdout and
// stderr.
func openFDs(args []string) verdict {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return unclear("reading /proc/self/fd: %v", err)
	}
	var a attempts
	var std []string
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		switch e.Name() {
		case "0":
			if target != "/dev/null" {
				a.escape("stdin is %s", target)
			}
			std = append(std, "0 /dev/null")
		case "1", "2":
			if !strings.HasPrefix(target, "pipe:") {
				a.escape("fd %s is %s", e.Name(), target)
			}
			std = append(std, e.Name()+" a pipe")
		default:
			a.escape("fd %s is open: %s", e.Name(), target)
		}
	}
	a.refuse("only %s", strings.Join(std, ", "))
	return a.verdict()
}

// stepEnv is the environment a RUN may see: its image's, plus what docker
// itself sets.
var stepEnv = map[string]bool{"PATH": true, "HOME": true, "HOSTNAME": true, "TERM": true}

// env CANARY: the builder's environment (CANARY is set on the host, in
// stepexec's own environment) must not reach the step.
func environment(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: env CANARY")
	}
	var a attempts
	keys := map[string]bool{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
		if k == args[0] {
			a.escape("the host's %s is set", k)
		} else if !stepEnv[k] {
			a.escape("unexpected %s", k)
		}
	}
	a.refuse("only %s", strings.Join(sortedKeys(keys), " "))
	return a.verdict()
}

// linger MARKER: a child in a session of its own that ignores SIGHUP and
// SIGTERM, left running when the step ends; the host checks it is gone.
func linger(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: linger MARKER")
	}
	cmd := exec.Command("/proc/self/exe", "linger", "linger-child", args[0])
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return unclear("starting the child: %v", err)
	}
	return ran("a setsid child ignoring SIGHUP and SIGTERM is left running")
}

func lingerChild(args []string) verdict {
	signal.Ignore(unix.SIGHUP, unix.SIGTERM, unix.SIGINT)
	time.Sleep(10 * time.Minute) // bounded, should the sandbox fail
	return verdict{}
}

// fork-storm N MARKER: N processes at once, each a busybox sleep whose
// command line carries MARKER (it runs as MARKER/sleep, a link to busybox),
// left running when the step ends; the host checks they are gone.
func forkStorm(args []string) verdict {
	if len(args) != 2 {
		return unclear("usage: fork-storm N MARKER")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return unclear("N: %v", err)
	}
	dir := filepath.Join(scratch, args[1])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return unclear("mkdir: %v", err)
	}
	sleep := filepath.Join(dir, "sleep")
	if err := os.Symlink("/bin/busybox", sleep); err != nil {
		return unclear("symlink: %v", err)
	}
	// Output to /dev/null: the sleeps must not hold this process's pipes.
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do %s 60 & i=$((i+1)); done`, n, sleep)
	if err := exec.Command("/bin/sh", "-c", script).Run(); err != nil {
		return unclear("the storm's shell: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		running := countMarked(args[1])
		if running >= n {
			return ran("%d processes running at once, left behind", n)
		}
		if time.Now().After(deadline) {
			return unclear("only %d of %d processes started", running, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countMarked counts the other processes whose command line holds marker.
func countMarked(marker string) int {
	pids, _ := filepath.Glob("/proc/[0-9]*")
	self := "/proc/" + strconv.Itoa(os.Getpid())
	n := 0
	for _, p := range pids {
		if p == self {
			continue
		}
		if cmdline, _ := os.ReadFile(p + "/cmdline"); bytes.Contains(cmdline, []byte(marker)) {
			n++
		}
	}
	return n
}
