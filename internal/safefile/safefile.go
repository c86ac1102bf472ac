// Package safefile opens files that stepexec reads on behalf of a
// Dockerfile, a build context, an image or an archive without ever blocking
// on what they name: a FIFO planted where a file is expected would block
// open(2) until a writer appears, and opening a device node can have side
// effects. The path is first opened O_PATH (which opens nothing), its type
// checked with fstat, and only a regular file is then reopened for reading.
package safefile

import (
	"fmt"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Open opens the regular file at path (symlinks followed) for reading.
// Anything else is refused with an error naming path and what it is.
func Open(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h := os.NewFile(uintptr(fd), path)
	defer h.Close()
	return Reopen(h, path)
}

// Reopen opens for reading the file an O_PATH handle names, if it is a
// regular file; name is used in messages and as the new file's name.
func Reopen(h *os.File, name string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if err := CheckRegular(st.Mode, name); err != nil {
		return nil, err
	}
	// Through the handle, so the file opened is the one just checked.
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	// A copy under the caller's name, so read errors name the file and
	// not the /proc magic link it was reopened through.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// CheckRegular returns nil for a regular file's st_mode, and otherwise an
// error saying that name is not one and what it is instead.
func CheckRegular(mode uint32, name string) error {
	if mode&unix.S_IFMT == unix.S_IFREG {
		return nil
	}
	return &NotRegularError{Path: name, Kind: Kind(mode)}
}

// NotRegularError is a path that names something other than a regular file.
type NotRegularError struct {
	Path string
	Kind string // "a directory", "a named pipe (FIFO)", …
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, e.Kind)
}

// Kind describes a file type from its st_mode, with an article.
func Kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a named pipe (FIFO)"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("a file of type %#o", mode&unix.S_IFMT)
}
