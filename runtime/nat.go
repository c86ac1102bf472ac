package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A natDriver connects a step's network namespace to the host's through
// a user-mode NAT helper (as rootlesskit's network drivers do): pasta
// (nat_pasta.go) or slirp4netns (nat_slirp.go). The helper runs in the
// builder's network namespace, so the step reaches what the builder
// reaches, as connections the helper makes.
type natDriver interface {
	// name is the helper's program name, for messages.
	name() string
	// connect starts the helper for the network namespace of process pid
	// (a step's pid 1, not yet running the command) and returns once the
	// namespace is configured. dir is the step's own scratch directory.
	connect(ctx context.Context, pid int, dir string) (natSession, error)
	// hostLoopback is the address that reaches the host's 127.0.0.1 from
	// the step (HostGatewayName in its /etc/hosts).
	hostLoopback() string
	// dnsForwarder is the address of the helper's DNS forwarder, for a
	// host whose resolv.conf names only local resolvers.
	dnsForwarder() string
}

// natSession is one running helper.
type natSession interface {
	// kill ends the helper at once.
	kill()
	// wait reaps it once killed. Its exit tears down the mount and user
	// namespaces it sandboxes itself in, which takes the kernel tens of
	// milliseconds (RCU grace periods), so steps do not wait for it: the
	// Runtime reaps in the background and Close waits for that.
	wait() error
}

// natReadyTimeout bounds how long a helper may take to set up a step's
// network on a loaded machine.
const natReadyTimeout = 20 * time.Second

// natCandidates are the helpers in order of preference. What a build pays
// for is the per step cost, and slirp4netns is ready about 13 ms sooner
// than pasta (BenchmarkRunNetworkModes: 3 ms against 16 ms for the helper
// itself, on this project's 2-CPU VM); pasta moves bulk data about 2.5
// times faster (2.8 against 1.1 GB/s from the host's loopback), which
// wins only for steps that download more than ~25 MB at such speeds.
var natCandidates = []func() (natDriver, error){newSlirp, newPasta}

// natDriver returns the helper steps use, found once per Runtime.
func (r *Runtime) natDriver() (natDriver, error) {
	r.natOnce.Do(func() { r.nat, r.natErr = findNAT(r.natOnly) })
	return r.nat, r.natErr
}

// findNAT picks the first helper that can work here (only that one when
// only is not empty), or says why none can.
func findNAT(only string) (natDriver, error) {
	if err := checkTun(); err != nil {
		return nil, err
	}
	var problems []string
	for _, candidate := range natCandidates {
		d, err := candidate()
		if err == nil && (only == "" || d.name() == only) {
			return d, nil
		}
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) == 0 {
		return nil, fmt.Errorf("user-mode networking: no helper named %q", only)
	}
	return nil, fmt.Errorf("user-mode networking needs slirp4netns or pasta (install the package slirp4netns or passt): %s", strings.Join(problems, "; "))
}

// checkTun opens /dev/net/tun as the helpers will: they make the step's
// tap device through it, with the caller's own rights.
func checkTun() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err == nil {
		return f.Close()
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("user-mode networking cannot open /dev/net/tun (%w): it must be readable and writable by every user, mode 0666 as most distributions ship it (as root: chmod 0666 /dev/net/tun)", err)
	}
	return fmt.Errorf("user-mode networking needs /dev/net/tun (the tun module): %w", err)
}

// helperProcess is a NAT helper run as the builder's child. It gets
// SIGKILL should the builder die (the thread that forks it is locked for
// the whole step, see Run), and stop kills it.
type helperProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
	once   sync.Once
	err    error
}

// startHelper starts argv with extra files (fd 3 on) and stderr kept for
// messages.
func startHelper(argv []string, extra ...*os.File) (*helperProcess, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	h := &helperProcess{cmd: cmd, stderr: &stderr, done: make(chan error, 1)}
	go func() { h.done <- cmd.Wait() }()
	return h, nil
}

// awaitReady waits for ready to deliver (the helper's readiness report),
// the helper to exit, the timeout or ctx.
func (h *helperProcess) awaitReady(ctx context.Context, ready <-chan error) error {
	timer := time.NewTimer(natReadyTimeout)
	defer timer.Stop()
	select {
	case err := <-ready:
		if err != nil {
			return h.failed(err)
		}
		return nil
	case err := <-h.done:
		h.done <- err
		return h.failed(fmt.Errorf("exited before the network was ready: %v", err))
	case <-timer.C:
		return h.failed(fmt.Errorf("not ready after %v", natReadyTimeout))
	case <-ctx.Done():
		return h.failed(ctx.Err())
	}
}

// failed stops the helper and describes err with what it printed.
func (h *helperProcess) failed(err error) error {
	h.kill()
	_ = h.wait()
	msg := strings.TrimSpace(h.stderr.String())
	if msg != "" {
		return fmt.Errorf("%s: %w: %s", h.cmd.Args[0], err, msg)
	}
	return fmt.Errorf("%s: %w", h.cmd.Args[0], err)
}

// kill ends the helper. Its only state is the step's network namespace,
// which goes with the step.
func (h *helperProcess) kill() { _ = h.cmd.Process.Kill() }

// wait reaps the helper once (later calls return the same).
func (h *helperProcess) wait() error {
	h.once.Do(func() {
		err := <-h.done
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			h.err = fmt.Errorf("waiting for %s: %w", h.cmd.Args[0], err)
		}
	})
	return h.err
}
