package buildcontext

import (
	"archive/tar"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/ctxio"
	"github.com/stepexec/stepexec/internal/fsat"
)

// openDir resolves rel inside the root and returns an O_PATH handle on the
// directory it names (ENOTDIR if it is something else).
func (u *unpacker) openDir(rel string) (*os.File, error) {
	h, err := pathrs.OpenatInRoot(u.root, rel)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		h.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		h.Close()
		return nil, unix.ENOTDIR
	}
	return h, nil
}

// mkdirAll returns a handle on directory rel inside the root, creating
// missing components 0755 (go-archive's mode for implied parents; set
// explicitly, the umask does not change it).
func (u *unpacker) mkdirAll(rel string) (*os.File, error) {
	if h, err := u.openDir(rel); !errors.Is(err, unix.ENOENT) {
		return h, err
	}
	cur, err := u.openDir(".")
	if err != nil {
		return nil, err
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		next, err := u.openDir(prefix)
		if errors.Is(err, unix.ENOENT) {
			// cur is prefix's parent as resolved in the root, so the new
			// directory is where the lookup will find it.
			if err = unix.Mkdirat(int(cur.Fd()), c, 0o755); err == unix.EEXIST {
				err = fmt.Errorf("%q exists but is not a directory inside the build context (a dangling symlink?)", prefix)
			} else if err == nil {
				if err = unix.Fchmodat(int(cur.Fd()), c, 0o755, 0); err == nil {
					next, err = u.openDir(prefix)
				}
			}
		}
		cur.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		cur = next
	}
	return cur, nil
}

// linkTarget resolves a hardlink's target: the handle of its directory and
// its base name.
func (u *unpacker) linkTarget(name, rel string) (*os.File, string, error) {
	lrel, err := cleanRel(name)
	if err != nil {
		return nil, "", fmt.Errorf("hardlink target: %w", err)
	}
	if lrel == "." || lrel == rel {
		return nil, "", fmt.Errorf("invalid hardlink target %q", name)
	}
	d, err := u.openDir(path.Dir(lrel))
	if err != nil {
		return nil, "", fmt.Errorf("hardlink target %q: %w", name, err)
	}
	return d, path.Base(lrel), nil
}

// clear removes what is at base (not following it), unless both it and the
// new entry are directories.
func (u *unpacker) clear(pfd int, base string, dir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return err
	}
	if dir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	if err := fsat.RemoveAll(pfd, base); err != nil {
		return fmt.Errorf("replace existing: %w", err)
	}
	return nil
}

func (u *unpacker) writeFile(pfd int, base string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	_, err = io.Copy(f, ctxio.Reader(u.ctx, r))
	if err == nil {
		// fchmod, not the umask-filtered create mode: the mode is the archive's.
		err = f.Chmod(hdr.FileInfo().Mode()) // permissions and setuid/setgid/sticky
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// escapes reports whether a symlink at rel with a relative target climbs
// out of the root (an absolute target names a path inside it).
func escapes(rel, target string) bool {
	if strings.HasPrefix(target, "/") {
		return false
	}
	p := path.Join(path.Dir(rel), target)
	return p == ".." || strings.HasPrefix(p, "../")
}

// finishDirs gives directory entries their modes and times, deepest first
// so that neither a read-only directory nor a touched child undoes them.
func (u *unpacker) finishDirs() error {
	slices.SortStableFunc(u.dirs, func(a, b dirMeta) int {
		return cmp.Compare(strings.Count(b.rel, "/"), strings.Count(a.rel, "/"))
	})
	for _, d := range u.dirs {
		if err := u.finishDir(d); err != nil {
			return fmt.Errorf("entry %q: %w", d.name, err)
		}
	}
	return nil
}

func (u *unpacker) finishDir(d dirMeta) error {
	parent, err := u.openDir(path.Dir(d.rel))
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd, base := int(parent.Fd()), path.Base(d.rel)
	// A later entry may have replaced the directory.
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	// Not a symlink (checked just above, in a private directory), so
	// fchmodat following the last component is moot.
	if err := unix.Fchmodat(pfd, base, d.mode, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return fsat.SetTimes(pfd, base, d.atime, d.mtime)
}
