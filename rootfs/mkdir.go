package rootfs

import (
	"fmt"
	pathpkg "path"
	"strings"

	"golang.org/x/sys/unix"
)

// MkdirAll creates path, an absolute path inside root (like a WORKDIR; a
// relative one is taken from root's "/"), and its missing parents, resolving
// every component inside root so symlinks cannot lead outside it. Directories
// it creates get mode 0755 and owner uid:gid; existing ones are left alone.
// It reports whether it created anything. A component that exists but is not
// a directory (or a dangling symlink) is an error.
func MkdirAll(root, path string, uid, gid int) (created bool, err error) {
	// WORKDIR semantics: "/.." is "/", so ".." is clamped, not an error.
	rel := strings.TrimPrefix(pathpkg.Clean("/"+path), "/")
	if rel == "" {
		rel = "."
	}
	rt, err := openRoot(root)
	if err != nil {
		return false, err
	}
	defer rt.Close()
	fd, err := rt.mkdirAll(rel, func(parent int, name string) error {
		created = true
		if err := unix.Fchownat(parent, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", uid, gid, err)
		}
		return nil
	})
	if err != nil {
		return created, fmt.Errorf("creating directory %s: %w", path, err)
	}
	unix.Close(fd)
	return created, nil
}
