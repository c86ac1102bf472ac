package snapshot

import (
	"fmt"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOverlayLegacy mounts m with mount(2), for kernels whose overlayfs
// lacks "lowerdir+". mount(2) copies its option string into one page
// (4096 bytes on x86-64): a chain of full layer paths overflows it at a
// few dozen layers. As containers/storage does, it tries in turn until the
// options fit: the layers' full paths; their short "l/" links; and the
// numbers of fds opened on every dir, resolved from /proc/self/fd as the
// working directory (five bytes a layer: overlayfs's 500-layer limit
// fits). Paths holding ',' or ':', which the option string cannot carry,
// go by fd too.
func mountOverlayLegacy(m overlayMount) error {
	flags := uintptr(unix.MS_NODEV)
	if m.readOnly {
		flags |= unix.MS_RDONLY
	}
	candidates := [][]string{m.lowers}
	if len(m.legacyShortcuts) == len(m.lowers) {
		candidates = append(candidates, m.legacyShortcuts)
	}
	for _, lowers := range candidates {
		if opts, ok := legacyOptions(m, lowers, m.upper, m.work); ok {
			if err := unix.Mount("overlay", m.target, "overlay", flags, opts); err != nil {
				return fmt.Errorf("mounting overlay at %s (options %s): %w", m.target, opts, err)
			}
			return nil
		}
	}
	return mountOverlayByFd(m, flags)
}

// legacyOptions is m's mount(2) option string with the given lower, upper
// and work dirs; false when it cannot be passed: too long, or a path holds
// a separator.
func legacyOptions(m overlayMount, lowers []string, upper, work string) (string, bool) {
	paths := append([]string{}, lowers...)
	if !m.readOnly {
		paths = append(paths, upper, work)
	}
	for _, p := range paths {
		if p == "" || strings.ContainsAny(p, ",:") {
			return "", false
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if !m.readOnly {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	for _, o := range fixedOptions(m.userxattr, m.readOnly) {
		opts += "," + o
	}
	return opts, len(opts) < unix.Getpagesize()
}

// mountOverlayByFd mounts m naming every dir by the number of an O_PATH
// fd opened on it, from a thread whose working directory is /proc/self/fd.
func mountOverlayByFd(m overlayMount, flags uintptr) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	name := func(dir string) (string, error) {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("mounting overlay at %s: opening %s: %w", m.target, dir, err)
		}
		fds = append(fds, fd)
		return strconv.Itoa(fd), nil
	}
	lowers := make([]string, len(m.lowers))
	for i, l := range m.lowers {
		var err error
		if lowers[i], err = name(l); err != nil {
			return err
		}
	}
	var upper, work string
	if !m.readOnly {
		var err error
		if upper, err = name(m.upper); err != nil {
			return err
		}
		if work, err = name(m.work); err != nil {
			return err
		}
	}
	opts, ok := legacyOptions(m, lowers, upper, work)
	if !ok {
		return fmt.Errorf("mounting overlay at %s: %d lower layers make a %d-byte option string even as fd numbers, over the page-size limit of this kernel's mount(2) (kernel 6.8+ has no limit)", m.target, len(lowers), len(opts))
	}
	target, err := filepath.Abs(m.target)
	if err != nil {
		return err
	}
	err = inDir("/proc/self/fd", func() error {
		return unix.Mount("overlay", target, "overlay", flags, opts)
	})
	if err != nil {
		return fmt.Errorf("mounting overlay at %s (options %s, fds of its %d layers, top %s): %w", m.target, opts, len(m.lowers), m.lowers[0], err)
	}
	return nil
}

// inDir runs f on an OS thread of its own whose working directory is dir
// (unshare(CLONE_FS) gives the thread a cwd apart from the process's),
// so that relative paths in f resolve from dir while every other goroutine
// keeps the process's. The thread is never handed back to the Go
// scheduler: it exits when f returns.
func inDir(dir string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // no Unlock: the thread dies with this goroutine
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare(CLONE_FS): %w", err)
			}
			if err := unix.Chdir(dir); err != nil {
				return fmt.Errorf("chdir %s: %w", dir, err)
			}
			return f()
		}()
	}()
	return <-errc
}
