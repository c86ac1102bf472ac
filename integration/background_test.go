package integration

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// background is a stepexec command running in a process group of its own,
// whose stderr is watched as it comes.
type background struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	mu     sync.Mutex
	stderr strings.Builder
	writes []timedWrite
	seen   chan struct{} // pinged on every write to stderr
	done   chan struct{} // closed when the command has exited
	err    error
}

type timedWrite struct {
	at  time.Time
	end int // stderr's length after it
}

func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.stderr.Write(p)
	b.writes = append(b.writes, timedWrite{time.Now(), b.stderr.Len()})
	b.mu.Unlock()
	select {
	case b.seen <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Stderr is what the command printed so far.
func (b *background) Stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// printedAt returns when the command printed want first (false if never).
func (b *background) printedAt(want string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := strings.Index(b.stderr.String(), want)
	if i < 0 {
		return time.Time{}, false
	}
	for _, w := range b.writes {
		if w.end >= i+len(want) {
			return w.at, true
		}
	}
	return time.Time{}, false
}

// start runs `stepexec ARGS` as the account in the background.
func (a *account) start(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b := &background{cancel: cancel, seen: make(chan struct{}, 1), done: make(chan struct{})}
	b.cmd = a.command(ctx, args...)
	b.cmd.Stderr = b
	// Its own group, so that the builder and everything it started
	// without a new session can be killed at once, as a CI runner does.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
		cancel()
	})
	return b
}

// waitFor waits until stderr holds want n times and returns when it saw
// it, failing the test if the command exits first or it takes a minute.
func (b *background) waitFor(t *testing.T, want string, n int) time.Time {
	t.Helper()
	deadline := time.After(time.Minute)
	for strings.Count(b.Stderr(), want) < n {
		select {
		case <-b.seen:
		case <-time.After(5 * time.Millisecond):
		case <-b.done:
			if strings.Count(b.Stderr(), want) >= n {
				return time.Now()
			}
			t.Fatalf("command exited (%v) before printing %q %d times:\n%s", b.err, want, n, b.Stderr())
		case <-deadline:
			t.Fatalf("no %q (%d times) within a minute:\n%s", want, n, b.Stderr())
		}
	}
	return time.Now()
}

// wait waits for the command to exit and returns its exit code.
func (b *background) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("command did not finish:\n%s", b.Stderr())
	}
	if ee, ok := b.err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 0
}

// killGroup SIGKILLs the command's whole process group and waits until
// every process of it, and every process of the account's runs (steps
// included), is gone. It returns the pids the group had, to look for what
// they left behind.
func (b *background) killGroup(t *testing.T, a *account) []int {
	t.Helper()
	return b.kill(t, a, -b.cmd.Process.Pid)
}

// killLeader is killGroup for the process the user started only (the
// rootless builder's re-executed child lives on until it sees that).
func (b *background) killLeader(t *testing.T, a *account) []int {
	t.Helper()
	return b.kill(t, a, b.cmd.Process.Pid)
}

func (b *background) kill(t *testing.T, a *account, target int) []int {
	t.Helper()
	pgid := b.cmd.Process.Pid
	pids := groupMembers(pgid)
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		t.Fatalf("kill -9 %d: %v", target, err)
	}
	if code := b.wait(t); code != 128+int(syscall.SIGKILL) {
		t.Logf("the command had exited (%d) before the kill", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(groupMembers(pgid)) > 0 || len(a.processes(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes outlived SIGKILL of %d by 15s: %v %v", target, groupMembers(pgid), a.processes(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return pids
}

// procStat is a live process's pid, parent and process group.
type procStat struct{ pid, ppid, pgrp int }

// procStats reads every live process's procStat from /proc.
func procStats() []procStat {
	var out []procStat
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state ppid pgrp …
		if len(f) > 2 {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			ppid, _ := strconv.Atoi(f[1])
			pgrp, _ := strconv.Atoi(f[2])
			out = append(out, procStat{pid, ppid, pgrp})
		}
	}
	return out
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	var out []int
	for _, p := range procStats() {
		if p.pgrp == pgid {
			out = append(out, p.pid)
		}
	}
	return out
}

// descendants lists the live processes below pid (children, theirs, …),
// whatever their group or session.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range procStats() {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	for todo := children[pid]; len(todo) > 0; {
		p := todo[0]
		todo = append(todo[1:], children[p]...)
		out = append(out, p)
	}
	return out
}

// stepCgroups lists the cgroup dirs real-root steps of the processes pids
// made (runtime: /sys/fs/cgroup/[CONTROLLER/]stepexec-PID).
func stepCgroups(pids []int) []string {
	var out []string
	for _, pid := range pids {
		name := "stepexec-" + strconv.Itoa(pid)
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
		if fileExists("/sys/fs/cgroup/" + name) {
			dirs = append(dirs, "/sys/fs/cgroup/"+name)
		}
		out = append(out, dirs...)
	}
	return out
}

// diskUsage is the space the files below dir take, in bytes.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

// removeCgroups removes cgroup dirs and the empty ones below them.
func removeCgroups(dirs []string) {
	for _, d := range dirs {
		var all []string
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			syscall.Rmdir(all[i])
		}
	}
}
