package snapshottest

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A Change is one change a step makes in a tree. The suite applies the
// same changes to a snapshot and to a plain directory, its oracle.
type Change func(root string) error

// FixedTime is the mtime the changes give what they write, so that equal
// changes make equal layers whenever they run.
var FixedTime = time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

// Write writes a file of mode 0644 (with missing parents, 0755) and gives
// it FixedTime.
func Write(p, content string) Change {
	return func(root string) error {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
		return os.Chtimes(full, FixedTime, FixedTime)
	}
}

// Mkdir makes a directory of mode (whatever the umask).
func Mkdir(p string, mode os.FileMode) Change {
	return func(root string) error {
		if err := os.Mkdir(filepath.Join(root, p), mode); err != nil {
			return err
		}
		return os.Chmod(filepath.Join(root, p), mode)
	}
}

// Remove deletes a file or an empty directory.
func Remove(p string) Change {
	return func(root string) error { return os.Remove(filepath.Join(root, p)) }
}

// RemoveAll deletes a tree.
func RemoveAll(p string) Change {
	return func(root string) error { return os.RemoveAll(filepath.Join(root, p)) }
}

// Rename moves from to to.
func Rename(from, to string) Change {
	return func(root string) error { return os.Rename(filepath.Join(root, from), filepath.Join(root, to)) }
}

// Symlink makes p a symlink to target, with FixedTime.
func Symlink(target, p string) Change {
	return func(root string) error {
		full := filepath.Join(root, p)
		if err := os.Symlink(target, full); err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(FixedTime.UnixNano()), unix.NsecToTimespec(FixedTime.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, full, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
}

// Link makes p a hard link to old.
func Link(old, p string) Change {
	return func(root string) error { return os.Link(filepath.Join(root, old), filepath.Join(root, p)) }
}

// Chmod changes a mode.
func Chmod(p string, mode os.FileMode) Change {
	return func(root string) error { return os.Chmod(filepath.Join(root, p), mode) }
}

// Chown changes an owner.
func Chown(p string, uid, gid int) Change {
	return func(root string) error { return os.Lchown(filepath.Join(root, p), uid, gid) }
}

// Setxattr sets an extended attribute.
func Setxattr(p, name, value string) Change {
	return func(root string) error { return unix.Lsetxattr(filepath.Join(root, p), name, []byte(value), 0) }
}

// Chtimes gives p FixedTime (a directory's mtime is in its layer entry).
func Chtimes(p string) Change {
	return func(root string) error { return os.Chtimes(filepath.Join(root, p), FixedTime, FixedTime) }
}

// Apply applies changes to root in order.
func Apply(root string, changes ...Change) error {
	for i, c := range changes {
		if err := c(root); err != nil {
			return fmt.Errorf("change %d: %w", i+1, err)
		}
	}
	return nil
}

// oracle returns a plain directory with the layers' changes applied in
// order: what a view of the top layer must show.
func oracle(t *testing.T, layers ...[]Change) string {
	t.Helper()
	dir := t.TempDir()
	for _, l := range layers {
		if err := Apply(dir, l...); err != nil {
			t.Fatalf("oracle: %v", err)
		}
	}
	return dir
}

// Describe lists every entry below root, one a line: path, mode (type
// included), owner, and for a file its size, content digest, mtime (whole
// seconds, as layers keep it) and the first path sharing its inode; for a
// symlink its target and mtime; then the xattrs but overlay's own.
// Directory mtimes are left out: any change in a directory sets them.
func Describe(root string) ([]string, error) {
	var lines []string
	links := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line, err := describeEntry(p, rel, links)
		lines = append(lines, line)
		return err
	})
	return lines, err
}

func describeEntry(p, rel string, links map[uint64]string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	line := fmt.Sprintf("%s mode=%o owner=%d:%d", rel, st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		line += fmt.Sprintf(" size=%d sha256=%x mtime=%d", len(b), sha256.Sum256(b), st.Mtim.Sec)
		if st.Nlink > 1 {
			if first, ok := links[st.Ino]; ok {
				line += " link=" + first
			} else {
				links[st.Ino] = rel
			}
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		line += fmt.Sprintf(" -> %s mtime=%d", target, st.Mtim.Sec)
	}
	xattrs, err := xattrsOf(p)
	return line + xattrs, err
}

func xattrsOf(p string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return "", nil
		}
		return "", fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	var out strings.Builder
	for _, name := range names {
		if _, rest, _ := strings.Cut(name, "."); name == "" || strings.HasPrefix(rest, "overlay.") {
			continue
		}
		vn, err := unix.Lgetxattr(p, name, buf)
		if err != nil {
			return "", fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		fmt.Fprintf(&out, " %s=%q", name, buf[:vn])
	}
	return out.String(), nil
}
