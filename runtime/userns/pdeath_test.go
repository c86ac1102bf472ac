package userns

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pdeathHelperEnv makes the test binary a helper (see pdeathHelper).
const pdeathHelperEnv = "STEPEXEC_USERNS_TEST_PDEATH"

func init() {
	if os.Getenv(pdeathHelperEnv) != "" {
		// main runs on the main thread, so other goroutines never do.
		runtime.LockOSThread()
	}
}

// pdeathHelper is the helper process: "print" reports the main thread's
// parent-death signal; a mode name enters that mode from a goroutine on
// another thread than the main one (so any exec comes from there, as it
// may in stepexec), reports the pid and signal it ends up with, and waits
// to be killed.
func pdeathHelper(what string) int {
	if what != "print" {
		mode := SubIDs
		if what == "single" {
			mode = SingleUID
		}
		entered := make(chan error)
		go func() { entered <- Enter(mode) }()
		if err := <-entered; err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	var sig int32
	if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("pid=%d pdeathsig=%d\n", os.Getpid(), sig)
	if what != "print" {
		time.Sleep(time.Minute)
	}
	return 0
}

// TestRearmParentDeath checks what a re-executed image does with the
// parent pid it is handed: arm SIGKILL when that is its parent, die at once
// when its parent is another (the named one died before the re-exec).
func TestRearmParentDeath(t *testing.T) {
	tests := []struct {
		name, ppid string
		wantOut    string // on stdout, exit 0
		wantSig    syscall.Signal
		wantErr    string // on stderr, exit 1
	}{
		{name: "parent", ppid: strconv.Itoa(os.Getpid()), wantOut: "pdeathsig=9"},
		{name: "not-the-parent", ppid: strconv.Itoa(os.Getppid()), wantSig: syscall.SIGKILL},
		{name: "malformed", ppid: "x", wantErr: "bad " + parentPIDEnv},
		{name: "unset", wantOut: "pdeathsig=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), pdeathHelperEnv+"=print")
			if tt.ppid != "" {
				cmd.Env = append(cmd.Env, parentPIDEnv+"="+tt.ppid)
			}
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			switch {
			case tt.wantSig != 0:
				if !ws.Signaled() || ws.Signal() != tt.wantSig {
					t.Errorf("got %v, want death by %v; stderr %q", cmd.ProcessState, tt.wantSig, stderr.String())
				}
			case tt.wantErr != "":
				if ws.ExitStatus() != 1 || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Errorf("got %v, stderr %q; want exit 1 saying %q", cmd.ProcessState, stderr.String(), tt.wantErr)
				}
			default:
				if ws.ExitStatus() != 0 || !strings.Contains(stdout.String(), tt.wantOut) {
					t.Errorf("got %v, stdout %q, stderr %q; want %q", cmd.ProcessState, stdout.String(), stderr.String(), tt.wantOut)
				}
			}
		})
	}
}

// TestEnteredChildDiesWithParent SIGKILLs the process that called Enter
// (from a thread other than the main one) and checks that the child it
// re-executed into the namespace dies too, rather than going on alone.
func TestEnteredChildDiesWithParent(t *testing.T) {
	if isRealRoot() {
		t.Skip("as real root Enter starts no child; run as an unprivileged user (e.g. stepexec-ci)")
	}
	for _, mode := range []string{"single", "subids"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "subids" {
				if err := Preflight(SubIDs); err != nil {
					if os.Getenv("STEPEXEC_REQUIRE_ALL") == "1" {
						t.Fatal(err)
					}
					t.Skipf("host not set up for subids: %v", err)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), pdeathHelperEnv+"="+mode)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			line, _ := bufio.NewReader(out).ReadString('\n')
			var child, sig int
			if _, err := fmt.Sscanf(line, "pid=%d pdeathsig=%d", &child, &sig); err != nil {
				cmd.Process.Kill()
				t.Fatalf("helper printed %q: %v", line, err)
			}
			defer syscall.Kill(child, syscall.SIGKILL) // should it have survived
			if child == cmd.Process.Pid {
				t.Fatalf("no child: Enter returned in the process it was called in (pid %d)", child)
			}
			if sig != int(syscall.SIGKILL) {
				t.Errorf("the entered child's parent-death signal is %d, want SIGKILL", sig)
			}
			cmd.Process.Kill()
			deadline := time.Now().Add(3 * time.Second)
			for alive(child) {
				if time.Now().After(deadline) {
					t.Fatalf("the entered child %d still runs 3 s after its parent %d was killed", child, cmd.Process.Pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// alive reports whether pid is a process that has not exited.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
