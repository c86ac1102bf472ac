package main

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// module: loading and unloading kernel modules. The image is no module; a
// permitted call fails with ENOEXEC, and the name to unload exists nowhere,
// so nothing happens even if the calls got through.
func loadModule(args []string) verdict {
	var a attempts
	a.try("init_module", unix.InitModule([]byte("not a module"), ""), unix.EPERM)
	if f, err := os.Open("/dev/null"); err == nil {
		a.try("finit_module", unix.FinitModule(int(f.Fd()), "", 0), unix.EPERM)
		f.Close()
	}
	a.try("delete_module", unix.DeleteModule("stepexec_probe_no_such_module", 0), unix.EPERM)
	return a.verdict()
}

// keyctl: the kernel keyrings are not namespaced: a step must not reach
// its user's keys or add its own.
func keyctl(args []string) verdict {
	var a attempts
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_USER_KEYRING, 0, 0, 0)
	a.try("user keyring", err, unix.EPERM)
	_, err = unix.AddKey("user", "stepexec-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
	a.try("add_key", err, unix.EPERM)
	_, err = unix.RequestKey("user", "stepexec-probe", "", unix.KEY_SPEC_PROCESS_KEYRING)
	a.try("request_key", err, unix.EPERM)
	return a.verdict()
}

// sethostname NAME: the host checks its own hostname did not change.
func setHostname(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: sethostname NAME")
	}
	var a attempts
	a.try("sethostname", unix.Sethostname([]byte(args[0])), unix.EPERM)
	a.try("setdomainname", unix.Setdomainname([]byte(args[0])), unix.EPERM)
	writeFile(&a, "/proc/sys/kernel/hostname", []byte(args[0]))
	return a.verdict()
}

// connect-tcp ADDR: a listener on the host's loopback.
func connectTCP(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: connect-tcp ADDR")
	}
	return connect("tcp", args[0])
}

// connect-abstract NAME: a listener on the host's abstract unix socket
// namespace (it belongs to the network namespace).
func connectAbstract(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: connect-abstract NAME")
	}
	return connect("unix", "@"+args[0])
}

func connect(network, addr string) verdict {
	var a attempts
	c, err := net.DialTimeout(network, addr, 3*time.Second)
	if err == nil {
		c.Close()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return unclear("connecting timed out")
	}
	a.try("connect", err, unix.ECONNREFUSED, unix.ENETUNREACH)
	return a.verdict()
}

// interfaces: the step's network has its own loopback and, on a private
// network, the tap device of its NAT helper (a tun/tap device: sysfs
// shows its tun_flags), none of the host's interfaces.
func interfaces(args []string) verdict {
	ifs, err := net.Interfaces()
	if err != nil {
		return unclear("listing interfaces: %v", err)
	}
	var names, foreign []string
	for _, i := range ifs {
		names = append(names, i.Name)
		if _, err := os.Stat("/sys/class/net/" + i.Name + "/tun_flags"); i.Name != "lo" && err != nil {
			foreign = append(foreign, i.Name)
		}
	}
	if len(foreign) > 0 || !slices.Contains(names, "lo") {
		return escaped("interfaces %s", strings.Join(names, " "))
	}
	if len(names) == 1 {
		return blocked("only lo")
	}
	return blocked("only lo and the NAT's tap device (%s)", strings.Join(names, " "))
}
