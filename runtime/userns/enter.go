package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	"github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"
)

// isRealRoot reports whether we are euid 0 in the initial user namespace,
// where no outer namespace is needed.
func isRealRoot() bool {
	return os.Geteuid() == 0 && !InUserNamespace()
}

// isEnteredChild reports whether this process is the child Enter re-exec'd
// into the outer namespace.
func isEnteredChild() bool {
	return os.Getenv(ModeEnv) != "" && os.Geteuid() == 0 && InUserNamespace()
}

// Enter puts the process into the outer user+mount namespace. As real root
// no user namespace is made: Enter re-execs the process in place (same pid)
// from a sealed memfd copy of its binary, once, into a mount namespace of
// its own with every mount private, and returns there. In the
// child Enter already re-exec'd it returns at once (after making "/"
// rprivate so its mounts never propagate). Otherwise it
// re-execs the binary with the same arguments into CLONE_NEWUSER|CLONE_NEWNS
// with the mapping of mode (the child's constructor, childns.go, enters the
// namespaces; the child then runs from the binary itself, and libcontainer
// seals each step's init), forwards SIGINT/SIGTERM/SIGHUP to the child
// (which gets SIGKILL if the parent dies, across all of its re-execs: see
// parentPIDEnv), and exits the process with the
// child's exit status: in the parent Enter does not return unless it fails.
//
// Callers must call go.podman.io/storage/pkg/reexec.Init() first, and the
// binary must be built with cgo (the namespaces are made by C constructors,
// pkg/unshare's and this package's, before the Go runtime starts).
func Enter(mode Mode) error {
	if isRealRoot() {
		return enterRealRoot()
	}
	if isEnteredChild() {
		return enteredChildSetup()
	}
	if err := watchMe(); err != nil {
		return err
	}
	// The child's constructor enters the namespaces (childns.go).
	if err := os.Setenv(childEnv, "1"); err != nil {
		return err
	}
	switch mode {
	case SubIDs:
		if err := os.Setenv(ModeEnv, SubIDs.String()); err != nil {
			return err
		}
		// Maps uid -> 0 then every subuid range consecutively (its source
		// was read: GetSubIDMappings + newuidmap, setgroups allowed), sets
		// Pdeathsig, forwards SIGHUP/SIGINT/SIGTERM and exits with the
		// child's status. It only returns in the child.
		unshare.MaybeReexecUsingUserNamespace(false)
		return fmt.Errorf("re-exec into a user namespace returned in the parent (euid %d)", os.Geteuid())
	case SingleUID:
		return enterSingleUID()
	}
	return fmt.Errorf("unknown user namespace mode %d", int(mode))
}

// enteredChildSetup runs in the re-exec'd child.
func enteredChildSetup() error {
	// A mount namespace made in a new user namespace turns shared mounts
	// into slaves, not private ones: make everything private so host mount
	// events do not propagate in either.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / rprivate in the outer mount namespace: %w", err)
	}
	if CurrentMode() == SubIDs {
		// pkg/unshare silently falls back to a single-id map when newuidmap
		// fails: refuse to pretend we have the subid range.
		uids, err := nestedFromFile("/proc/self/uid_map")
		if err != nil {
			return err
		}
		gids, err := nestedFromFile("/proc/self/gid_map")
		if err != nil {
			return err
		}
		if total(uids) < 2 || total(gids) < 2 {
			return errors.New("the outer user namespace maps only one uid/gid: newuidmap/newgidmap failed (see the warnings above); fix /etc/subuid, /etc/subgid or the helpers, or opt into single-uid mode")
		}
	}
	return nil
}

// execSealedCopy execs a sealed memfd copy of the running binary with the
// same arguments and environment; it returns only on failure.
func execSealedCopy() error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("opening own binary: %w", err)
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return fmt.Errorf("stat own binary: %w", err)
	}
	sealed, err := exeseal.CloneBinary(self, st.Size(), "stepexec", os.TempDir())
	if err != nil {
		return fmt.Errorf("sealing a copy of own binary: %w", err)
	}
	// The fd is close-on-exec: fine for an ELF binary, whose file the
	// kernel holds once execve has opened it.
	path := "/proc/self/fd/" + strconv.Itoa(int(sealed.Fd()))
	err = unix.Exec(path, os.Args, keepWatch(os.Environ()))
	sealed.Close()
	return fmt.Errorf("re-executing from a sealed copy %s: %w", path, err)
}

func total(m []configs.IDMap) int64 {
	var n int64
	for _, e := range m {
		n += e.Size
	}
	return n
}

func enterSingleUID() error {
	// The child's parent-death signal fires when the thread that forks it
	// ends: keep that thread for good (this function ends in os.Exit).
	runtime.LockOSThread()
	uid, gid := os.Getuid(), os.Getgid()
	args := append([]string{os.Args[0]}, os.Args[1:]...)
	cmd := unshare.Command(args...)
	cmd.UnshareFlags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
	cmd.UidMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(uid), Size: 1}}
	cmd.GidMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(gid), Size: 1}}
	// Unprivileged writes of gid_map require setgroups to be denied.
	cmd.GidMappingsEnableSetgroups = false
	cmd.Env = append(os.Environ(), ModeEnv+"="+SingleUID.String())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	cmd.Hook = func(int) error {
		go func() {
			for s := range sigs {
				_ = cmd.Cmd.Process.Signal(s)
			}
		}()
		return nil
	}
	err := cmd.Run()
	signal.Stop(sigs)
	close(sigs)
	os.Exit(exitStatus(err))
	return nil
}

// exitStatus turns the child's wait result into the parent's exit status
// (128+signal when killed by a signal, as a shell reports it).
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
	fmt.Fprintf(os.Stderr, "stepexec: running in a user namespace: %v\n", err)
	return 1
}
