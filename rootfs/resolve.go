package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/safefile"
)

// root is an open handle on a directory that acts as "/" for every lookup
// made through it: symlinks (absolute or relative) and ".." are resolved as if
// the process were chrooted there, so no lookup can leave it.
type root struct {
	file *os.File // O_PATH|O_DIRECTORY handle on the root directory
	path string   // the caller's path of the root, for messages and for operations on the root itself
}

// disableOpenat2 forces the filepath-securejoin fallback used on kernels
// without openat2 (< 5.6); tests set it to exercise that path.
var disableOpenat2 = false

func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	return &root{file: os.NewFile(uintptr(fd), dir), path: dir}, nil
}

func (r *root) Close() error { return r.file.Close() }

func (r *root) fd() int { return int(r.file.Fd()) }

// cleanRel turns an archive or WORKDIR path into a path relative to the root.
// A leading "/" is dropped (the path is confined, like docker does) but a path
// that climbs out lexically ("../x", "a/../../x") is rejected: no legitimate
// root filesystem contains one, so it is an attack or a broken archive.
// The result is "." for the root itself.
func cleanRel(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("path %q climbs out of the root", name)
	}
	return p, nil
}

// open resolves rel inside the root (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)
// and returns an fd opened with flags. rel must come from cleanRel.
func (r *root) open(rel string, flags int) (int, error) {
	if !disableOpenat2 {
		how := unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		}
		for range 16 {
			fd, err := unix.Openat2(r.fd(), rel, &how)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue // a concurrent rename raced the lookup; retry
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			break
		}
	}
	// Kernel without openat2: filepath-securejoin walks the path component by
	// component with the same in-root semantics and returns an O_PATH handle.
	h, err := pathrs.OpenatInRoot(r.file, rel)
	if err != nil {
		// Callers test for plain errnos (ENOENT), as from openat2.
		var errno unix.Errno
		if errors.As(err, &errno) {
			return -1, errno
		}
		return -1, err
	}
	defer h.Close()
	if flags&unix.O_DIRECTORY != 0 {
		// The O_PATH handle is of whatever the path names.
		var st unix.Stat_t
		if err := unix.Fstat(int(h.Fd()), &st); err != nil {
			return -1, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, unix.ENOTDIR
		}
	}
	if flags&unix.O_PATH != 0 {
		return unix.Dup(int(h.Fd()))
	}
	f, err := pathrs.Reopen(h, flags)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	return unix.Dup(int(f.Fd()))
}

// openDir resolves rel inside the root and returns an O_PATH handle on the
// directory it names (following symlinks, in root).
func (r *root) openDir(rel string) (int, error) {
	return r.open(rel, unix.O_PATH|unix.O_DIRECTORY)
}

// mkdirAll makes sure the directory rel exists inside the root, creating
// missing components with mode 0755 (and calling created for each, with the
// parent's fd and the new name), and returns an O_PATH handle on it.
// Symlinks on the way are followed in root; a component that is a dangling
// symlink or a non-directory is an error, as for `mkdir -p` in a chroot.
func (r *root) mkdirAll(rel string, created func(parent int, name string) error) (int, error) {
	cur, err := unix.Dup(r.fd())
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return cur, nil
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		next, err := r.openDir(prefix)
		if err == unix.ENOENT {
			// cur is prefix's parent as resolved in root, so the new
			// directory is created where the lookup will find it.
			if err = unix.Mkdirat(cur, c, 0o755); err != nil {
				unix.Close(cur)
				if err == unix.EEXIST {
					return -1, fmt.Errorf("mkdir %s: %q exists but does not resolve to a directory inside the root (dangling symlink?)", rel, prefix)
				}
				return -1, fmt.Errorf("mkdir %s: %w", prefix, err)
			}
			// Mkdirat is subject to the umask; the mode is part of the contract.
			if err = unix.Fchmodat(cur, c, 0o755, 0); err == nil && created != nil {
				err = created(cur, c)
			}
			if err == nil {
				next, err = r.openDir(prefix)
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, fmt.Errorf("/%s: %w", prefix, err)
		}
		cur = next
	}
	return cur, nil
}

// OpenFile opens the regular file at p (an absolute or relative path inside
// the root filesystem dir, symlinks followed in root) for reading. A FIFO,
// device or directory there is refused without being opened: the path is
// resolved O_PATH and checked first. Errors name p as the image sees it
// ("/etc/passwd"); a missing file's error wraps os.ErrNotExist.
func OpenFile(dir, p string) (*os.File, error) {
	rt, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	rel, err := cleanRel(p)
	if err != nil {
		return nil, err
	}
	return rt.openFile(rel)
}

// openFile is OpenFile on an open root; rel must come from cleanRel.
func (r *root) openFile(rel string) (*os.File, error) {
	name := path.Join("/", rel)
	fd, err := r.open(rel, unix.O_PATH)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	h := os.NewFile(uintptr(fd), name)
	defer h.Close()
	return safefile.Reopen(h, name)
}
