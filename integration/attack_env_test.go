package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// canaryVar is set in stepexec's environment for the attack build; no
// step may see it.
const canaryVar = "STEPEXEC_ATTACK_CANARY"

// attackEnv is the host side of one account's attack run: what the probes
// aim at, and what the checks look at afterwards.
type attackEnv struct {
	a            *account
	probeBin     string    // stepexec-probe, for Host rows' own base images (writeAttackBase)
	secret       string    // a host file (0644) the steps must not read
	victim       *exec.Cmd // a host process of the account's the steps must not see or touch
	victimMarker string    // its argv[0]
	tcp          *listener // on the host's 127.0.0.1
	abstract     *listener // on the host's abstract unix socket namespace
	hostname     string    // the host's, before the build
	canary       string    // canaryVar's value
}

func newAttackEnv(t *testing.T, a *account, probeBin string) *attackEnv {
	t.Helper()
	e := &attackEnv{a: a, probeBin: probeBin, canary: randomHex(8)}
	var err error
	if e.hostname, err = os.Hostname(); err != nil {
		t.Fatal(err)
	}
	e.secret = writeSecret(t, a)
	e.victimMarker = fmt.Sprintf("stepexec-attack-victim-%d-%s", os.Getpid(), randomHex(4))
	e.startVictim(t)
	e.tcp = listen(t, "tcp", "127.0.0.1:0")
	e.abstract = listen(t, "unix", "@stepexec-attack-"+randomHex(8))
	return e
}

// expand replaces the placeholders of p.Run by this run's values.
func (e *attackEnv) expand(p probe) []string {
	r := strings.NewReplacer(
		"{secret}", e.secret,
		"{victim}", strconv.Itoa(e.victim.Process.Pid),
		"{victim-marker}", e.victimMarker,
		"{tcp}", e.tcp.Addr().String(),
		"{abstract}", strings.TrimPrefix(e.abstract.Addr().String(), "@"),
		"{canary}", canaryVar,
		"{marker}", rowMarker(p.ID),
	)
	out := make([]string, len(p.Run))
	for i, arg := range p.Run {
		out[i] = r.Replace(arg)
	}
	return out
}

// rowMarker goes into the command line of the processes a row leaves
// running; it holds stepMarker, so assertNothingLeft finds them too.
func rowMarker(id string) string { return stepMarker + "-" + id }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// writeSecret makes a host file the account owns and anyone may read, in a
// directory anyone may search: a step that reached its path would read it.
func writeSecret(t *testing.T, a *account) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "stepexec-attack-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "secret")
	if err := os.WriteFile(p, []byte("host secret "+randomHex(8)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, a.uid, a.gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// startVictim runs `sleep 600` as the account, named victimMarker.
func (e *attackEnv) startVictim(t *testing.T) {
	t.Helper()
	cmd := e.a.commandOf(context.Background(), "bash", "-c", "exec -a "+e.victimMarker+" sleep 600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.victim = cmd
	t.Cleanup(e.stopVictim)
	// Until bash has exec'd, the command line is not the marker yet.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); strings.HasPrefix(string(cmdline), e.victimMarker) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the victim process never became %s", e.victimMarker)
}

func (e *attackEnv) stopVictim() {
	if e.victim == nil || e.victim.ProcessState != nil {
		return
	}
	syscall.Kill(-e.victim.Process.Pid, syscall.SIGKILL)
	e.victim.Wait()
}

// victimState is the victim's state letter in /proc (S sleeping, T/t
// stopped, Z dead), or "gone".
func (e *attackEnv) victimState() string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.victim.Process.Pid))
	if err != nil {
		return "gone"
	}
	s := string(raw)
	if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// listener counts the connections it accepts.
type listener struct {
	net.Listener
	accepted atomic.Int32
}

func listen(t *testing.T, network, addr string) *listener {
	t.Helper()
	nl, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{Listener: nl}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	}()
	return l
}

// The checks rows run on the host after the build.

// victimUntouched: the host process still sleeps, neither killed nor
// stopped by a tracer.
func victimUntouched(t *testing.T, e *attackEnv, in outcome) outcome {
	if st := e.victimState(); st != "S" && st != "R" {
		return outcome{verdictEscaped, "the host process is now in state " + st}
	}
	return in
}

// noConnections: the host listener accepted nothing.
func noConnections(l func(*attackEnv) *listener) func(*testing.T, *attackEnv, outcome) outcome {
	return func(t *testing.T, e *attackEnv, in outcome) outcome {
		if n := l(e).accepted.Load(); n > 0 {
			return outcome{verdictEscaped, fmt.Sprintf("the host listener accepted %d connections", n)}
		}
		return in
	}
}

// hostnameKept: the host's hostname is what it was.
func hostnameKept(t *testing.T, e *attackEnv, in outcome) outcome {
	if h, _ := os.Hostname(); h != e.hostname {
		return outcome{verdictEscaped, fmt.Sprintf("the host's hostname changed to %q", h)}
	}
	return in
}

// goneWithStep: what the row left running (its marker in their command
// lines) is gone; that makes a probe that ran "contained".
func goneWithStep(id string) func(*testing.T, *attackEnv, outcome) outcome {
	return func(t *testing.T, e *attackEnv, in outcome) outcome {
		if in.Verdict != verdictRan {
			return in
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := markedProcesses(rowMarker(id))
			if left == 0 {
				return outcome{verdictContained, in.Detail + "; none outlived the step"}
			}
			if time.Now().After(deadline) {
				return outcome{verdictEscaped, fmt.Sprintf("%d processes outlived the step", left)}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func markedProcesses(marker string) int {
	n := 0
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		if cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline")); strings.Contains(string(cmdline), marker) {
			n++
		}
	}
	return n
}
