package integration

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// killCase is one way a build gets SIGKILLed while a RUN step runs.
type killCase struct {
	name  string
	group bool   // kill(-pgid) of the whole process group, not only the process the user started
	run   string // the RUN instruction running when the kill comes
	// tagWait, when set, is how long after the kill no image may appear:
	// the step ends by itself, so a build that survived would tag one.
	tagWait time.Duration
}

// running is what a step prints once it runs what it is to be killed in
// (the RUN line shows in the output too, so it prints it with printf).
const running = "step-now-running"

var killCases = []killCase{
	// The step outlasts the 3 s allowed for the build's processes to go,
	// and a build that survived would tag its image 4 s after the kill.
	{name: "starter", run: "printf 'step-now-%s\\n' running; sleep 4 & sleep 4; echo " + stepMarker, tagWait: 7 * time.Second},
	{name: "group", group: true, run: "printf 'step-now-%s\\n' running; sleep 600 & sleep 600; echo " + stepMarker},
	// su turns the step's pid 1 into nobody, and a change of credentials
	// clears the kernel's parent-death signal: the step must die anyway.
	{name: "group-su", group: true, run: "exec su -s /bin/sh nobody -c \"printf 'step-now-%s\\n' running; sleep 600 & sleep 600; echo " + stepMarker + "\""},
}

// TestKilledBuildLeavesNothing SIGKILLs a build during a RUN step: the
// process the user started alone (as a shell's job control or a CI runner
// killing its child does), or its whole process group. Within a few
// seconds no process of the build may remain, no image may get tagged,
// and the next stepexec command leaves no mount, snapshot or process.
func TestKilledBuildLeavesNothing(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		for _, c := range killCases {
			t.Run(c.name, func(t *testing.T) { killDuringRun(t, a, c) })
		}
		if a.rootless() {
			// --single-uid enters its namespace its own way.
			t.Run("single-uid", func(t *testing.T) {
				u, err := user.Lookup(a.name)
				if err != nil {
					t.Fatal(err)
				}
				s := newAccount(t, u)
				s.mustRun(t, "--single-uid", "import", tarball)
				killDuringRun(t, s, killCase{name: "single-uid", run: killCases[0].run, tagWait: killCases[0].tagWait}, "--single-uid")
			})
		}
	})
}

// killDuringRun builds a Dockerfile whose last RUN is c.run, kills the
// build once that step runs and checks what is left.
func killDuringRun(t *testing.T, a *account, c killCase, global ...string) {
	tag := "killed-" + c.name
	ctxDir := a.writeContext(t, "kill-"+c.name, "FROM alpine\nRUN echo made > /made\nRUN "+c.run+"\n")
	b := startBuild(t, a, c.group, append(global, "build", "--progress=plain", "-t", tag, ctxDir)...)
	t.Cleanup(func() { killLeftovers(t, a) })
	b.waitFor(t, running)

	pid := b.cmd.Process.Pid
	target := pid
	if c.group {
		target = -pid // setpgid made the build's pid its group id
	}
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = b.cmd.Wait()

	if left := waitNoProcesses(t, a, 3*time.Second); len(left) > 0 {
		t.Errorf("3 s after SIGKILL of %d, processes of the build remain:\n%s\n--- build's stderr\n%s",
			target, strings.Join(left, "\n"), b.output())
	}
	time.Sleep(time.Until(killed.Add(c.tagWait)))
	out := a.mustRun(t, append(global, "images")...).stdout
	if strings.Contains(out, "localhost/"+tag) {
		t.Errorf("the killed build tagged its image %s:\n%s", tag, out)
	}
	// The `images` above was the next command: it must have cleaned what
	// the killed build left. Layers the build committed may stay (cache).
	a.assertNothingLeft(t, a.storeLayers(t))
	if a.uid == 0 {
		if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/stepexec-" + strconv.Itoa(pid)); len(dirs) > 0 {
			t.Errorf("cgroups of the killed build left: %v", dirs)
		}
	}
}

// build is a running `stepexec build` whose stderr is collected.
type build struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	grew   chan struct{} // gets a value whenever stderr grew or ended
}

func startBuild(t *testing.T, a *account, ownGroup bool, args ...string) *build {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := a.command(ctx, args...)
	if ownGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	b := &build{cmd: cmd, grew: make(chan struct{}, 1)}
	go func() {
		defer pr.Close()
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			b.mu.Lock()
			b.stderr.Write(buf[:n])
			b.mu.Unlock()
			select {
			case b.grew <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return b
}

func (b *build) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// waitFor waits until the build's output shows s.
func (b *build) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !strings.Contains(b.output(), s) {
		select {
		case <-b.grew:
		case <-deadline:
			b.cmd.Process.Kill()
			t.Fatalf("the build never printed %q:\n%s", s, b.output())
		}
	}
}

// waitNoProcesses polls until the account has no process left, or d
// passed; it returns what is left then.
func waitNoProcesses(t *testing.T, a *account, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := a.processes(t)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killLeftovers SIGKILLs what a failed check left, so that later tests do
// not count it (a step's pid 1 takes its whole pid namespace along).
func killLeftovers(t *testing.T, a *account) {
	for _, p := range a.processes(t) {
		if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	waitNoProcesses(t, a, 3*time.Second)
}
