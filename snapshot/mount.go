package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// overlayMount describes one overlay mount: lowers are top first.
type overlayMount struct {
	lowers          []string
	upper, work     string
	target          string
	userxattr       bool
	legacyShortcuts []string // the lowers' short "l/" links, for mount(2)
	readOnly        bool     // a View: lowers only, no upper or work dir

	// view, when set, mounts the overlay for a step of a real-root
	// process: the layers are given to overlay as fds of the view's
	// idmapped clones (lowerRels relative to its layers clone, upper and
	// work relative to its snapshots clone) and the overlay is created with
	// the step root's filesystem ids. lowers/upper/work are then unused.
	view              *stepView
	lowerRels         []string
	emptyRel          string // parentless (or a one-layer view): an empty dir in the snapshots clone
	upperRel, workRel string
}

// inUserNamespace reports whether this process is in a user namespace other
// than the initial one (whose uid_map is the identity over all 2^32-1 ids).
var inUserNamespace = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
})

// errNoNewAPI says the kernel lacks fsopen or "lowerdir+" (before 6.8).
var errNoNewAPI = errors.New("new mount API with lowerdir+ unavailable")

// mountOverlay mounts m.target. It prefers fsopen/fsconfig, which takes the
// lower dirs one by one ("lowerdir+", no option-length limit), and falls back
// to mount(2) with a "lowerdir=a:b:c" string on kernels without it
// (lowerdirAppend; see mount_legacy.go for the page-size limit).
//
// The mount is nodev: a device node in a layer (a base image's, created
// for real as root) opens nothing, in a step or here. A step's /dev is a
// mount of its own holding only the devices docker allows.
func mountOverlay(m overlayMount) error {
	if m.view != nil {
		// Layers as fds need the new API (6.13+); StepShift checked that
		// this kernel has it.
		return m.view.shift.AsStepRoot(func() error { return mountOverlayFsopen(m) })
	}
	if lowerdirAppend() {
		err := mountOverlayFsopen(m)
		if !errors.Is(err, errNoNewAPI) {
			return err
		}
	}
	return mountOverlayLegacy(m)
}

// fsError appends the messages the kernel queued on a filesystem context.
func fsError(fd int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 4096)
	for i := 0; i < 16; i++ {
		n, rerr := unix.Read(fd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(bytes.TrimSpace(buf[:n])))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s: %w (kernel: %s)", what, err, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func mountOverlayFsopen(m overlayMount) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return errNoNewAPI
	}
	if err != nil {
		return fmt.Errorf("fsopen overlay for %s: %w", m.target, err)
	}
	defer unix.Close(fd)
	if m.view != nil {
		if err := m.view.setLayers(fd, m); err != nil {
			return err
		}
	} else {
		for i, l := range m.lowers {
			if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
				if i == 0 && errors.Is(err, unix.EINVAL) {
					// Kernels before 6.8 do not know "lowerdir+".
					return errNoNewAPI
				}
				return fsError(fd, fmt.Sprintf("overlay lower dir %s for %s", l, m.target), err)
			}
		}
	}
	set := func(key, val string) error {
		if err := unix.FsconfigSetString(fd, key, val); err != nil {
			return fsError(fd, fmt.Sprintf("overlay option %s=%s for %s", key, val, m.target), err)
		}
		return nil
	}
	flag := func(key string) error {
		if err := unix.FsconfigSetFlag(fd, key); err != nil {
			return fsError(fd, fmt.Sprintf("overlay option %s for %s", key, m.target), err)
		}
		return nil
	}
	if m.view == nil && !m.readOnly {
		if err := set("upperdir", m.upper); err != nil {
			return err
		}
		if err := set("workdir", m.work); err != nil {
			return err
		}
	}
	for _, kv := range fixedOptions(m.userxattr, m.readOnly) {
		k, v, hasVal := strings.Cut(kv, "=")
		if hasVal {
			err = set(k, v)
		} else {
			err = flag(k)
		}
		if err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fsError(fd, fmt.Sprintf("creating overlay for %s", m.target), err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV|readOnlyAttr(m.readOnly))
	if err != nil {
		return fsError(fd, fmt.Sprintf("fsmount overlay for %s", m.target), err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, m.target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attaching overlay at %s: %w", m.target, err)
	}
	return nil
}

// fixedOptions are the overlay options besides the directories. volatile
// skips syncs on unmount (each snapshot has a fresh workdir, as volatile
// requires); redirect_dir and metacopy stay off so the upper dir holds plain
// files the differ can read; userxattr is needed (and is the only choice)
// inside a user namespace, where trusted.* xattrs are out of reach.
func fixedOptions(userxattr, readOnly bool) []string {
	var opts []string
	if userxattr {
		opts = []string{"userxattr"}
	} else {
		opts = []string{"redirect_dir=off", "metacopy=off"}
	}
	if !readOnly {
		opts = append(opts, "volatile") // meaningless without an upper dir
	}
	return opts
}

// unmount detaches the mount at target; a target that is not a mount point
// (or is gone) is not an error.
func unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", target, err)
}
