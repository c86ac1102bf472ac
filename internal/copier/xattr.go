package copier

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

type xattr struct {
	name  string
	value []byte
}

// skipXattr leaves out what belongs to the host, not the file: overlayfs's
// own attributes (copying an opaque or redirect marker into a layer would
// change what the layer means) and SELinux labels (the destination gets
// its own, as with buildah).
func skipXattr(name string) bool {
	return name == "security.selinux" ||
		strings.HasPrefix(name, "trusted.overlay.") ||
		strings.HasPrefix(name, "user.overlay.")
}

// readXattrs reads an entry's extended attributes, sorted by name: through
// its open fd, or for symlinks and device nodes through /proc/self/fd (the
// final component not followed). Filesystems without xattrs give none.
func readXattrs(e *entry, name, display string) ([]xattr, error) {
	list := func(dest []byte) (int, error) { return unix.Llistxattr(procPath(e.dirfd, name), dest) }
	get := func(attr string, dest []byte) (int, error) {
		return unix.Lgetxattr(procPath(e.dirfd, name), attr, dest)
	}
	if e.fd >= 0 {
		fd := e.fd
		list = func(dest []byte) (int, error) { return unix.Flistxattr(fd, dest) }
		get = func(attr string, dest []byte) (int, error) { return unix.Fgetxattr(fd, attr, dest) }
	}
	names, err := grow(list)
	if err != nil {
		if unsupportedXattr(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list xattrs of %s: %w", display, err)
	}
	var out []xattr
	for _, n := range bytes.Split(names, []byte{0}) {
		if len(n) == 0 || skipXattr(string(n)) {
			continue
		}
		v, err := grow(func(dest []byte) (int, error) { return get(string(n), dest) })
		if err == unix.ENODATA {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", n, display, err)
		}
		out = append(out, xattr{name: string(n), value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// grow calls a size-probing xattr syscall until its buffer is big enough.
func grow(call func([]byte) (int, error)) ([]byte, error) {
	var small [256]byte
	n, err := call(small[:])
	if err == nil {
		return bytes.Clone(small[:n]), nil
	}
	for range 8 {
		if err != unix.ERANGE {
			return nil, err
		}
		size, err := call(nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		if n, err = call(buf); err == nil {
			return buf[:n], nil
		}
	}
	return nil, err
}

func unsupportedXattr(err error) bool {
	return err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == unix.ENOENT
}

// writeXattrs sets xattrs on a destination entry (through fd when >= 0).
// Like BuildKit, which logs and goes on, it tolerates attributes the
// destination refuses: trusted.* and security.* outside the initial user
// namespace, or a filesystem without xattrs.
func writeXattrs(fd, dirfd int, name string, xs []xattr) error {
	for _, x := range xs {
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, x.name, x.value, 0)
		} else {
			err = unix.Lsetxattr(procPath(dirfd, name), x.name, x.value, 0)
		}
		if err != nil && err != unix.EPERM && !unsupportedXattr(err) {
			return fmt.Errorf("set xattr %s: %w", x.name, err)
		}
	}
	return nil
}

// procPath names dirfd/name for the path-only xattr calls (l*xattr do not
// follow the final component; the magic link names a directory we hold).
func procPath(dirfd int, name string) string {
	return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
}
