package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// slirp4netns's fixed addresses in its default 10.0.2.0/24 network.
const (
	slirpHostLoopback = "10.0.2.2" // the host's 127.0.0.1 (unless --disable-host-loopback)
	slirpDNS          = "10.0.2.3" // its built-in DNS forwarder
)

// slirp is the slirp4netns helper: a tap device "tap0" at 10.0.2.100 in
// the step's namespace, NAT through libslirp's TCP/IP stack in the
// builder's, 10.0.2.2 mapped to the host's 127.0.0.1. It runs sandboxed
// (its own mount namespace) under a seccomp filter.
type slirp struct{ path string }

func newSlirp() (natDriver, error) {
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		return nil, fmt.Errorf("slirp4netns is not installed (%w)", err)
	}
	return &slirp{path: path}, nil
}

func (s *slirp) name() string         { return "slirp4netns" }
func (s *slirp) hostLoopback() string { return slirpHostLoopback }
func (s *slirp) dnsForwarder() string { return slirpDNS }

// args: fd 3 is the ready pipe, fd 4 the exit pipe (slirp4netns exits when
// it closes: the builder holds its other end).
func (s *slirp) args(pid int) []string {
	ns := "/proc/" + strconv.Itoa(pid) + "/ns/"
	return []string{s.path, "--configure", "--mtu=65520", "--ready-fd=3", "--exit-fd=4",
		"--enable-sandbox", "--enable-seccomp",
		"--netns-type=path", "--userns-path=" + ns + "user", ns + "net", "tap0"}
}

func (s *slirp) connect(ctx context.Context, pid int, _ string) (natSession, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("slirp4netns: %w", err)
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("slirp4netns: %w", err)
	}
	h, err := startHelper(s.args(pid), readyW, exitR)
	readyW.Close()
	exitR.Close()
	if err != nil {
		exitW.Close()
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 1)
		n, err := readyR.Read(buf)
		if err == nil && (n != 1 || buf[0] != '1') {
			err = errors.New("unexpected readiness report")
		}
		ready <- err
	}()
	sess := &slirpSession{h: h, exit: exitW}
	if err := h.awaitReady(ctx, ready); err != nil {
		exitW.Close()
		return nil, err
	}
	return sess, nil
}

type slirpSession struct {
	h    *helperProcess
	exit *os.File
}

func (s *slirpSession) kill() {
	s.h.kill()
	s.exit.Close()
}

func (s *slirpSession) wait() error { return s.h.wait() }
