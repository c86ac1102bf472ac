// Package fsat holds the file operations the archive unpackers (rootfs,
// the build context's, ADD's) share. Each works on a name in a directory
// fd the caller has already resolved safely, never following a symlink at
// that name, so that an archive's planted links cannot redirect it.
package fsat

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// RemoveAll removes name in dirfd (a symlink itself, not what it points
// to) and, if it is a directory, everything below it. A missing name is
// not an error.
func RemoveAll(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	for _, n := range names {
		if err != nil {
			break
		}
		err = RemoveAll(fd, n)
	}
	f.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// SetTimes gives name in dirfd (a symlink itself) an archive entry's
// access and modification times. A zero mtime means the entry has none:
// the times are left alone; a zero atime is taken to be mtime.
func SetTimes(dirfd int, name string, atime, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimensat: %w", err)
	}
	return nil
}
