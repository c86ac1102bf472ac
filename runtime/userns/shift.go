package userns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/runc/libcontainer/configs"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// Shift is how a real-root stepexec keeps host root out of its steps, as
// podman does for --userns=auto: a step's user namespace maps its ids
// 0..65535 to root's subordinate ids (/etc/subuid, /etc/subgid), and the
// layers under a step's overlay are idmapped mounts with the same map, so
// that a file stored on disk as uid 0 is seen by the step as its own root
// and a file the step's root creates is stored as uid 0. The store keeps
// the image's ids; only the running step is shifted.
//
// Inside the outer namespace of a rootless run no Shift is needed: the
// outer namespace already shifted every id (see NestedIDMaps).
type Shift struct {
	// UIDs and GIDs are the steps' maps: container ids 0..65535 to host ids.
	UIDs, GIDs []configs.IDMap
	// nsfd is a user namespace with exactly these maps, the idmap of the
	// mounts Clone makes. Kept open for the life of the process.
	nsfd int
}

// rootName is the account whose subordinate ranges a real-root stepexec
// uses (matched by name or uid 0, as shadow-utils matches).
const rootName = "root"

var (
	subuidFile = "/etc/subuid"
	subgidFile = "/etc/subgid"
)

// StepShift returns the process's Shift: nil (and no error) when the
// process is not real root. As real root it reads root's subordinate
// ranges (an error when there are none or fewer than 65536 ids: Preflight
// says how to fix it) and checks once that this kernel mounts an overlay on
// idmapped layers; if it refuses, StepShift warns on stderr, naming the
// reason, and returns nil: steps then get the identity map, i.e. host root
// in a step (NestedIDMaps follows the same decision).
func StepShift() (*Shift, error) {
	return stepShift()
}

var stepShift = sync.OnceValues(func() (*Shift, error) {
	if !isRealRoot() {
		return nil, nil
	}
	uids, gids, err := rootRanges(subuidFile, subgidFile)
	if err != nil {
		return nil, err
	}
	s := &Shift{UIDs: uids, GIDs: gids}
	if s.nsfd, err = newUserNamespace(uids, gids); err == nil {
		err = s.probe()
		if err != nil {
			unix.Close(s.nsfd)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stepexec: WARNING: RUN steps run as HOST ROOT (identity id map, without host capabilities): this kernel cannot mount an overlay on idmapped layers (%v); Linux 6.13 or later is needed to give steps root's subordinate ids\n", err)
		return nil, nil
	}
	return s, nil
})

// Root returns the host uid and gid that are root in a step.
func (s *Shift) Root() (uid, gid int) {
	return int(s.UIDs[0].HostID), int(s.GIDs[0].HostID)
}

// Clone returns a detached, non-recursive clone of the mount tree at path
// (open_tree OPEN_TREE_CLONE), idmapped with the steps' maps: through it, a
// file stored as uid N is seen as the host uid steps know as N, and a file
// created there by host uid H+N is stored as N. The clone is attached
// nowhere: it lives while the returned file (or an overlay using a
// directory of it) is open, and vanishes with the process, so nothing can
// be left mounted.
func (s *Shift) Clone(path string) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cloning the mount at %s (open_tree): %w", path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(s.nsfd)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("idmapping a clone of %s (mount_setattr MOUNT_ATTR_IDMAP): %w", path, err)
	}
	return os.NewFile(uintptr(fd), path+" (idmapped)"), nil
}

// UserNSPath names, for this process, a user namespace with the steps'
// maps: the idmap of a bind mount libcontainer makes for a step
// (configs.MountIDMapping.UserNSPath), so that it shows the stored ids as
// Clone does, without a namespace made per step.
func (s *Shift) UserNSPath() string {
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(s.nsfd)
}

// AsStepRoot runs f on an OS thread whose filesystem uid and gid are the
// host ids of a step's root, with its capabilities kept. An overlay whose
// layers are idmapped clones must be created (fsconfig CREATE) there:
// overlay does its own work (its work dir, whiteouts, copy-up temp files)
// with its creator's credentials, and host uid 0 has no id in the clones'
// map (EOVERFLOW). The thread is never handed back to the Go scheduler: it
// exits when f returns, so the changed credentials cannot leak.
func (s *Shift) AsStepRoot(f func() error) error {
	uid, gid := s.Root()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // no Unlock: the thread dies with this goroutine
		errc <- func() error {
			if err := setfsid(unix.SetfsgidRetGid, gid); err != nil {
				return fmt.Errorf("setfsgid %d: %w", gid, err)
			}
			if err := setfsid(unix.SetfsuidRetUid, uid); err != nil {
				return fmt.Errorf("setfsuid %d: %w", uid, err)
			}
			// A non-zero fsuid drops CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER,
			// CAP_FSETID, CAP_MKNOD... from the effective set; overlay's
			// copy-up needs them. They are still permitted: raise them.
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				return fmt.Errorf("capget: %w", err)
			}
			data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				return fmt.Errorf("capset: %w", err)
			}
			return f()
		}()
	}()
	return <-errc
}

// setfsid sets the thread's fsuid or fsgid and checks that it took (the
// system calls report failure only by not changing the id).
func setfsid(set func(int) (int, error), id int) error {
	if _, err := set(id); err != nil {
		return err
	}
	got, err := set(-1) // -1 is invalid: returns the current id unchanged
	if err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("id is %d after setting it", got)
	}
	return nil
}

// holderName is the reexec entry point of the short-lived process whose
// user namespace newUserNamespace keeps.
const holderName = "stepexec-userns-holder"

func init() {
	reexec.Register(holderName, func() {
		// Live until the parent has opened our namespace (it closes stdin).
		_, _ = io.Copy(io.Discard, os.Stdin)
	})
}

// newUserNamespace returns an fd of a new user namespace with the given
// maps. A process is needed to create one (unshare(CLONE_NEWUSER) is
// refused in a multi-threaded process): a child of this binary is started
// in it, its namespace opened, and the child reaped. The namespace lives on
// through the fd.
func newUserNamespace(uids, gids []configs.IDMap) (int, error) {
	cmd := reexec.Command(holderName)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: sysMaps(uids),
		GidMappings: sysMaps(gids),
		Pdeathsig:   syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		stdin.Close()
		return -1, fmt.Errorf("starting a process in a new user namespace: %w", err)
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	stdin.Close()
	if werr := cmd.Wait(); werr != nil && err == nil {
		unix.Close(fd)
		return -1, fmt.Errorf("user namespace holder process: %w", werr)
	}
	if err != nil {
		return -1, fmt.Errorf("opening the holder's user namespace: %w", err)
	}
	return fd, nil
}

func sysMaps(m []configs.IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

// probe mounts (detached, never attached anywhere) an overlay whose lower,
// upper and work directories are given as fds of an idmapped clone, as
// snapshots of steps are mounted: idmapped mounts need Linux 5.12 and a
// filesystem that supports them, idmapped overlay layers 5.19, layers
// passed as fds 6.13.
func (s *Shift) probe() error {
	dir, err := os.MkdirTemp("", "stepexec-idmap-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"l", "u", "w"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	clone, err := s.Clone(dir)
	if err != nil {
		return err
	}
	defer clone.Close()
	return s.AsStepRoot(func() error {
		fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return fmt.Errorf("fsopen overlay: %w", err)
		}
		defer unix.Close(fsfd)
		for _, l := range [][2]string{{"lowerdir+", "l"}, {"upperdir", "u"}, {"workdir", "w"}} {
			fd, err := unix.Openat(int(clone.Fd()), l[1], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("opening %s in the idmapped clone of %s: %w", l[1], dir, err)
			}
			err = unix.FsconfigSetFd(fsfd, l[0], fd)
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("overlay %s given as an fd of an idmapped mount: %w", l[0], err)
			}
		}
		if err := unix.FsconfigCreate(fsfd); err != nil {
			return fmt.Errorf("creating an overlay on idmapped layers: %w", err)
		}
		mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("fsmount of an overlay on idmapped layers: %w", err)
		}
		unix.Close(mfd) // detached: closing it unmounts it
		return nil
	})
}

// rootRanges reads root's step maps from the subordinate uid and gid
// files; the error is one sentence naming every problem and the fix.
func rootRanges(subuid, subgid string) (uids, gids []configs.IDMap, err error) {
	var problems []string
	uids, p := rootRangeFromFile(subuid)
	if p != "" {
		problems = append(problems, p)
	}
	gids, p = rootRangeFromFile(subgid)
	if p != "" {
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("as root, stepexec runs RUN steps as root's subordinate ids, but %s: %s", strings.Join(problems, " and "), rootFix)
	}
	return uids, gids, nil
}

// rootFix is how to give root a subordinate range. The range lies above
// useradd's allocation area (SUB_UID_MIN 100000 .. SUB_UID_MAX 600100000),
// so no user created later is given the same ids.
const rootFix = "give root a range of 65536 ids as root, e.g. `usermod --add-subuids 1000000000-1000065535 --add-subgids 1000000000-1000065535 root`"

// rootRangeFromFile reads root's step map from a subordinate id file, or
// says what is wrong with it.
func rootRangeFromFile(path string) ([]configs.IDMap, string) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, path + " does not exist"
		}
		return nil, err.Error()
	}
	defer f.Close()
	return rootRange(f, path)
}

// rootRange turns root's lines of a subordinate id file (name "root" or
// uid 0, in file order) into a step map of container ids 0..65535: each
// range continues where the previous one ended, and only the first 65536
// ids are used. The string says what is wrong, if anything.
func rootRange(r io.Reader, path string) ([]configs.IDMap, string) {
	var out []configs.IDMap
	var next int64 // next container id to map
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 || (parts[0] != rootName && parts[0] != "0") {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || start+count > 1<<32-1 {
			return nil, fmt.Sprintf("%s has a malformed line %q", path, line)
		}
		if start == 0 && count > 0 {
			return nil, fmt.Sprintf("%s gives root a range starting at host id 0 (%q), which would map host root into steps", path, line)
		}
		if count == 0 || next >= nestedLimit {
			continue
		}
		n := min(int64(count), nestedLimit-next)
		out = append(out, configs.IDMap{ContainerID: next, HostID: int64(start), Size: n})
		next += n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Sprintf("reading %s: %v", path, err)
	}
	if next == 0 {
		return nil, path + " has no entry for root"
	}
	if next < nestedLimit {
		return nil, fmt.Sprintf("%s gives root only %d ids", path, next)
	}
	return out, ""
}
