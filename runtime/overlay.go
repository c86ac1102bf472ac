package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

// throwawayOverlay mounts at dir/merged an overlay whose only lower layer
// is b.Path and whose upper and work dirs are in dir, so that the step's
// writes land in dir and go with it. As real root its layers are idmapped
// clones (b.Path's unless it already shows the step's ids) and overlay is
// created with the step root's ids, as snapshot.Prepare with ForStep mounts a
// step's rootfs: an overlay cannot be idmapped once made.
func (s *step) throwawayOverlay(dir string, b Bind) (string, error) {
	merged := filepath.Join(dir, "merged")
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	sh := s.r.shift
	lower, err := openLayer(sh, b.Path, !b.IDMapped)
	if err != nil {
		return "", err
	}
	defer lower.Close()
	base, err := openLayer(sh, dir, true)
	if err != nil {
		return "", err
	}
	defer base.Close()
	// The overlay's root shows its upper dir's owner and mode: make them
	// the source's (the owner as best it can: an id the idmap cannot hold
	// stays root's).
	var st unix.Stat_t
	if err := unix.Fstat(int(lower.Fd()), &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", b.Path, err)
	}
	_ = unix.Fchownat(int(base.Fd()), "upper", int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	if err := unix.Fchmodat(int(base.Fd()), "upper", st.Mode&0o7777, 0); err != nil {
		return "", fmt.Errorf("chmod %s/upper: %w", dir, err)
	}
	upper, err := openIn(base, "upper")
	if err != nil {
		return "", err
	}
	defer upper.Close()
	work, err := openIn(base, "work")
	if err != nil {
		return "", err
	}
	defer work.Close()
	mount := func() error { return mountOverlay(lower, upper, work, merged) }
	if sh != nil {
		err = sh.AsStepRoot(mount)
	} else {
		err = mount()
	}
	if err != nil {
		return "", fmt.Errorf("a writable view of %s: %w", b.Path, err)
	}
	s.hostMounts = append(s.hostMounts, merged)
	return merged, nil
}

// openLayer opens dir for overlay: with a Shift and idmap, as an idmapped
// clone (attached nowhere: it goes when overlay and the file drop it),
// else as an O_PATH fd.
func openLayer(sh *userns.Shift, dir string, idmap bool) (*os.File, error) {
	if sh != nil && idmap {
		return sh.Clone(dir)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// openIn opens the directory name in dir as an O_PATH fd.
func openIn(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s in %s: %w", name, dir.Name(), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name)), nil
}

// mountOverlay mounts an overlay of lower, upper and work (fds) at
// target, nodev. Layers as fds need Linux 6.13; older kernels get
// mount(2) with the fds' /proc paths.
func mountOverlay(lower, upper, work *os.File, target string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return mountOverlayLegacy(lower, upper, work, target)
	}
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetFd(fsfd, "lowerdir+", int(lower.Fd())); noLayerFds(err) {
		return mountOverlayLegacy(lower, upper, work, target)
	} else if err != nil {
		return fmt.Errorf("overlay lowerdir+ %s: %w", lower.Name(), err)
	}
	if err := unix.FsconfigSetFd(fsfd, "upperdir", int(upper.Fd())); err != nil {
		return fmt.Errorf("overlay upperdir %s: %w", upper.Name(), err)
	}
	if err := unix.FsconfigSetFd(fsfd, "workdir", int(work.Fd())); err != nil {
		return fmt.Errorf("overlay workdir %s: %w", work.Name(), err)
	}
	for _, flag := range overlayFlags() {
		if err := unix.FsconfigSetFlag(fsfd, flag); err != nil {
			return fmt.Errorf("overlay option %s: %w", flag, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("creating an overlay on %s: %w", lower.Name(), err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attaching an overlay at %s: %w", target, err)
	}
	return nil
}

// noLayerFds tells from fsconfig's answer to a lower layer given as an fd
// that the kernel's overlay takes no layer fds: EOPNOTSUPP before 6.5,
// where overlay still parses its options the legacy way (fsconfig refuses
// every fd there), EINVAL from 6.5 to 6.12.
func noLayerFds(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

func mountOverlayLegacy(lower, upper, work *os.File, target string) error {
	fdPath := func(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }
	opts := "lowerdir=" + fdPath(lower) + ",upperdir=" + fdPath(upper) + ",workdir=" + fdPath(work)
	for _, flag := range overlayFlags() {
		opts += "," + flag
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting an overlay on %s at %s: %w", lower.Name(), target, err)
	}
	return nil
}

// overlayFlags: volatile, since nothing of it is kept (no syncs);
// userxattr is required in a user namespace.
func overlayFlags() []string {
	if userns.InUserNamespace() {
		return []string{"volatile", "userxattr"}
	}
	return []string{"volatile"}
}

// copyFile copies the regular file src to dst (new), with its owner (as
// this process sees it) and mode.
func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = unix.Fchown(int(out.Fd()), int(st.Uid), int(st.Gid))
	}
	if err == nil {
		err = unix.Fchmod(int(out.Fd()), st.Mode&0o7777)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %s for a writable bind mount: %w", src, err)
	}
	return nil
}
