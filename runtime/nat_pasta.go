package runtime

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/stepexec/stepexec/runtime/userns"
)

// pastaDNS is where a step's DNS queries go for pasta to forward to the
// host's first resolver (podman's choice of address).
const pastaDNS = "169.254.1.1"

// pasta is the pasta helper (package passt). The step's namespace gets a
// tap device with the host's own address and routes, as pasta does by
// default; TCP to the gateway address is mapped to the host's loopback
// (pasta's default, which --no-map-gw would turn off), so the gateway is
// host.containers.internal. No port is forwarded either way (-t/-u/-T/-U
// none): pasta's default "auto" would make every port the host listens
// on reachable at the step's own 127.0.0.1.
type pasta struct {
	path    string
	iface   string     // the host's interface of the default route
	gateway netip.Addr // its IPv4 gateway
}

func newPasta() (natDriver, error) {
	path, err := exec.LookPath("pasta")
	if err != nil {
		return nil, fmt.Errorf("pasta is not installed (%w)", err)
	}
	iface, gw, err := defaultRoute4("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("pasta: %w", err)
	}
	return &pasta{path: path, iface: iface, gateway: gw}, nil
}

func (p *pasta) name() string         { return "pasta" }
func (p *pasta) hostLoopback() string { return p.gateway.String() }
func (p *pasta) dnsForwarder() string { return pastaDNS }

// args: the step's user and network namespaces are fds 3 and 4, opened
// by the builder: pasta drops its capabilities before it opens them, and
// a step's pid 1 is not dumpable until it runs the command, so its
// /proc/PID/ns files are out of pasta's reach; its own fds are not.
func (p *pasta) args(pidFile string) []string {
	args := []string{p.path, "--config-net", "--foreground", "--quiet",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--interface", p.iface, "--gateway", p.gateway.String(), "--dns-forward", pastaDNS,
		"--pid", pidFile, "--userns", "/proc/self/fd/3", "--netns", "/proc/self/fd/4"}
	if os.Geteuid() == 0 && !userns.InUserNamespace() {
		// Started as real root, pasta would change to nobody first, who
		// may not enter a step's user namespace (real root owns it). It
		// drops its capabilities once it has joined and set up.
		args = append(args, "--runas", "0:0")
	}
	return args
}

// connect runs pasta in the foreground, so that it stays the builder's
// child: its pid file is a FIFO this side reads, and pasta writes its pid
// there once the namespace is configured.
func (p *pasta) connect(ctx context.Context, pid int, dir string) (natSession, error) {
	pidFile := filepath.Join(dir, "pasta.pid")
	if err := syscall.Mkfifo(pidFile, 0o600); err != nil {
		return nil, fmt.Errorf("pasta: %w", err)
	}
	defer os.Remove(pidFile)
	// Read-write: a FIFO read with no writer yet would see EOF at once.
	fifo, err := os.OpenFile(pidFile, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("pasta: %w", err)
	}
	defer fifo.Close()
	nsFiles, err := openNamespaces(pid, "user", "net")
	if err != nil {
		return nil, fmt.Errorf("pasta: %w", err)
	}
	h, err := startHelper(p.args(pidFile), nsFiles...)
	closeAll(nsFiles)
	if err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 32)
		n, err := fifo.Read(buf)
		if err == nil && n == 0 {
			err = errors.New("empty pid file")
		}
		ready <- err
	}()
	if err := h.awaitReady(ctx, ready); err != nil {
		return nil, err
	}
	return h, nil
}

// openNamespaces opens the namespaces of process pid, in order.
func openNamespaces(pid int, kinds ...string) ([]*os.File, error) {
	var files []*os.File
	for _, k := range kinds {
		f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/" + k)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// defaultRoute4 returns the interface and gateway of the host's preferred
// IPv4 default route (lowest metric, then first), from a /proc/net/route
// table.
func defaultRoute4(table string) (string, netip.Addr, error) {
	f, err := os.Open(table)
	if err != nil {
		return "", netip.Addr{}, err
	}
	defer f.Close()
	var iface string
	var gw netip.Addr
	best := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		fld := strings.Fields(sc.Text())
		if len(fld) < 8 || fld[1] != "00000000" || fld[7] != "00000000" {
			continue
		}
		raw, err := hex.DecodeString(fld[2])
		metric, merr := strconv.Atoi(fld[6])
		if err != nil || len(raw) != 4 || merr != nil || (best >= 0 && metric >= best) {
			continue
		}
		var a [4]byte
		binary.LittleEndian.PutUint32(a[:], binary.BigEndian.Uint32(raw))
		if addr := netip.AddrFrom4(a); !addr.IsUnspecified() {
			iface, gw, best = fld[0], addr, metric
		}
	}
	if best < 0 {
		return "", netip.Addr{}, errors.New("the host has no IPv4 default route via a gateway, which pasta copies into the step's namespace")
	}
	return iface, gw, sc.Err()
}
