package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

// stepRootsBase is where each real-root Store mounts the tmpfs its steps'
// root filesystems are mounted in (a variable for tests).
var stepRootsBase = "/run/stepexec"

// stepRoots is a tmpfs, mounted only in the process's private mount
// namespace (userns.Enter makes one as real root) on an empty directory
// <stepRootsBase>/<pid>-<random>, that holds one mount point per step
// snapshot.
//
// Why: libcontainer's init resolves the rootfs path as the step's root, a
// subordinate host uid with no capability over host inodes, so every
// directory on that path must be searchable by it. The store's directories
// are not (they are 0700: an upper dir holds what a step wrote, setuid-root
// files included); the tmpfs's root is 0711 and stepRootsBase and its
// parents are searchable. In every other mount namespace the directory is
// just an empty 0700 one: no other user sees the overlays, let alone
// reaches them.
type stepRoots struct {
	dir string
}

// mountStepRoots makes the Store's stepRoots.
func mountStepRoots() (*stepRoots, error) {
	if err := checkPrivateMounts(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stepRootsBase, 0o711); err != nil {
		return nil, fmt.Errorf("creating %s: %w", stepRootsBase, err)
	}
	if err := checkSearchable(stepRootsBase); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(stepRootsBase, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("creating a mount point in %s: %w", stepRootsBase, err)
	}
	// It only ever holds empty directories (mount points).
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "mode=0711,size=1m"); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("mounting a tmpfs for steps' root filesystems at %s: %w", dir, err)
	}
	return &stepRoots{dir: dir}, nil
}

// close unmounts the tmpfs (with anything still mounted on it) and removes
// its mount point.
func (r *stepRoots) close() error {
	if err := unmount(r.dir); err != nil {
		return err
	}
	if err := os.Remove(r.dir); err != nil {
		return fmt.Errorf("removing %s: %w", r.dir, err)
	}
	return nil
}

// checkPrivateMounts refuses to mount steps' root filesystems in a mount
// namespace shared with other processes (the host's), where every user
// would see them.
func checkPrivateMounts() error {
	if !userns.PrivateMounts() {
		return errors.New("as real root, snapshots for RUN steps are mounted only in the private mount namespace userns.Enter (stepexec.EnterNamespace) makes, and this process was not started through it")
	}
	return nil
}

// checkSearchable makes sure the step's root can resolve paths below dir:
// dir (made by us) is root's 0711, and each of its parents is searchable
// by others.
func checkSearchable(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("checking %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 {
		return fmt.Errorf("%s must be a directory owned by root", dir)
	}
	if st.Mode&0o7777 != 0o711 {
		if err := unix.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("making %s 0711: %w", dir, err)
		}
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if err := unix.Stat(d, &st); err != nil {
			return fmt.Errorf("checking %s: %w", d, err)
		}
		if st.Mode&0o001 == 0 {
			return fmt.Errorf("RUN steps cannot reach their root filesystems in %s: %s is not searchable by other users (o+x), as steps' root is one", dir, d)
		}
		if d == "/" {
			return nil
		}
	}
}

// removeStaleStepRoots removes the mount points of stepRoots whose process
// is gone (killed: its tmpfs vanished with its mount namespace). They are
// empty directories; one of a live process is never touched, since
// removing a mount point that is one in another namespace would detach its
// mounts there.
func removeStaleStepRoots() {
	entries, err := os.ReadDir(stepRootsBase)
	if err != nil {
		return // none yet
	}
	for _, e := range entries {
		pid, _, ok := strings.Cut(e.Name(), "-")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || n <= 0 || processAlive(n) {
			continue
		}
		_ = os.Remove(filepath.Join(stepRootsBase, e.Name())) // fails unless empty, as wanted
	}
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
