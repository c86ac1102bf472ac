package copier

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// root is a directory used as "/" for every lookup made through it, as a
// chroot would: absolute symlinks start over at the root and ".." stops
// there. Each step of a lookup opens one name relative to a directory fd
// already held, never following a symlink (the walk follows them itself),
// so no lookup can leave the root even if the tree changes under it. This
// gives openat2(RESOLVE_IN_ROOT)'s guarantee on any kernel, and tells the
// caller which symlinks were crossed and what the real path is.
type root struct {
	fd   int    // O_PATH|O_DIRECTORY handle on the root directory
	path string // the caller's name for it, for messages
}

const maxSymlinks = 255 // as continuity's RootPath, which BuildKit uses

func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &root{fd: fd, path: dir}, nil
}

func (r *root) Close() error { return unix.Close(r.fd) }

// lookup is where a path led inside a root.
type lookup struct {
	parent    int          // O_PATH fd of the deepest existing directory on the way; the caller closes it
	parentRel string       // its path relative to the root ("" = the root)
	name      string       // the component after parent ("" when the path is the root itself)
	st        *unix.Stat_t // lstat of parent/name (of the root when name is ""), nil when it does not exist
	missing   []string     // components below name, when name does not exist
}

// rel is the real path the lookup names, relative to the root ("" = root).
func (l *lookup) rel() string {
	return joinRel(append([]string{l.parentRel, l.name}, l.missing...)...)
}

func (l *lookup) close() { unix.Close(l.parent) }

// isDir reports whether the lookup names an existing directory.
func (l *lookup) isDir() bool { return l.st != nil && l.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// resolve follows p inside the root. Symlinks on the way are followed in
// root, and so is the last component when followLast is set; onLink (may be
// nil) is told the real path of each symlink crossed. A missing component
// ends the walk: the rest is returned lexically in missing, as continuity's
// RootPath does. A component that exists but is not a directory, with more
// to come, is ENOTDIR.
func (r *root) resolve(p string, followLast bool, onLink func(rel string) error) (*lookup, error) {
	w := &rootWalk{r: r}
	defer w.closeAll()
	todo := components(p)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			w.pop()
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(w.cur(), c, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			rest := path.Clean(strings.Join(append([]string{c}, todo...), "/"))
			if rest != "." && rest != ".." && !strings.HasPrefix(rest, "../") {
				comps := strings.Split(rest, "/")
				return w.result(comps[0], nil, comps[1:]), nil
			}
			// A later ".." cancels the missing name: go on from here.
			todo = components(rest)
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "lstat", Path: "/" + w.rel(c), Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK && (len(todo) > 0 || followLast) {
			if links++; links > maxSymlinks {
				return nil, &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
			}
			if onLink != nil {
				if err := onLink(w.rel(c)); err != nil {
					return nil, err
				}
			}
			target, err := readlinkat(w.cur(), c)
			if err != nil {
				return nil, &os.PathError{Op: "readlink", Path: "/" + w.rel(c), Err: err}
			}
			if strings.HasPrefix(target, "/") {
				w.closeAll()
			}
			todo = append(components(target), todo...)
			continue
		}
		if len(todo) == 0 {
			return w.result(c, &st, nil), nil
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, &os.PathError{Op: "lookup", Path: "/" + w.rel(c), Err: unix.ENOTDIR}
		}
		fd, err := unix.Openat(w.cur(), c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: "/" + w.rel(c), Err: err}
		}
		w.push(fd, c, st)
	}
	// The path named a directory already on the stack, or the root.
	if len(w.fds) == 0 {
		var st unix.Stat_t
		if err := unix.Fstat(r.fd, &st); err != nil {
			return nil, &os.PathError{Op: "stat", Path: r.path, Err: err}
		}
		return w.result("", &st, nil), nil
	}
	name, st := w.names[len(w.names)-1], w.stats[len(w.stats)-1]
	w.pop()
	return w.result(name, &st, nil), nil
}

// rootWalk is the stack of directories a lookup went through.
type rootWalk struct {
	r     *root
	fds   []int
	names []string
	stats []unix.Stat_t
}

func (w *rootWalk) cur() int {
	if len(w.fds) == 0 {
		return w.r.fd
	}
	return w.fds[len(w.fds)-1]
}

func (w *rootWalk) rel(name string) string {
	return joinRel(append(w.names[:len(w.names):len(w.names)], name)...)
}

func (w *rootWalk) push(fd int, name string, st unix.Stat_t) {
	w.fds = append(w.fds, fd)
	w.names = append(w.names, name)
	w.stats = append(w.stats, st)
}

func (w *rootWalk) pop() {
	if n := len(w.fds); n > 0 {
		unix.Close(w.fds[n-1])
		w.fds, w.names, w.stats = w.fds[:n-1], w.names[:n-1], w.stats[:n-1]
	}
}

func (w *rootWalk) closeAll() {
	for len(w.fds) > 0 {
		w.pop()
	}
}

// result hands the current directory to a lookup (dup'ed: the walk closes its own).
func (w *rootWalk) result(name string, st *unix.Stat_t, missing []string) *lookup {
	fd, err := unix.FcntlInt(uintptr(w.cur()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return &lookup{parent: fd, parentRel: joinRel(w.names...), name: name, st: st, missing: missing}
}

// mkdirAll makes sure p (resolved in root, following symlinks) is a
// directory, creating what is missing with mode perm; created is called for
// each new directory (parent fd, name) so the caller can chown it. It
// returns an O_RDONLY fd on the directory and its lookup (whose parent is
// the directory's parent, for setting its times).
func (r *root) mkdirAll(p string, perm uint32, created func(parent int, name string) error) (int, *lookup, error) {
	l, err := r.resolve(p, true, nil)
	if err != nil {
		return -1, nil, err
	}
	if l.parent < 0 {
		return -1, nil, fmt.Errorf("dup: %w", unix.EMFILE)
	}
	if l.name == "" {
		fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			l.close()
			return -1, nil, &os.PathError{Op: "open", Path: "/", Err: err}
		}
		return fd, l, nil
	}
	if l.st != nil && !l.isDir() {
		l.close()
		return -1, nil, &os.PathError{Op: "mkdir", Path: "/" + l.rel(), Err: unix.ENOTDIR}
	}
	comps := append([]string{l.name}, l.missing...)
	for i, c := range comps {
		if l.st == nil || i > 0 {
			if err := unix.Mkdirat(l.parent, c, perm); err != nil && err != unix.EEXIST {
				l.close()
				return -1, nil, &os.PathError{Op: "mkdir", Path: "/" + joinRel(l.parentRel, c), Err: err}
			} else if err == nil {
				// Mkdirat is subject to the umask; the mode is part of the contract.
				err = unix.Fchmodat(l.parent, c, perm, 0)
				if err == nil && created != nil {
					err = created(l.parent, c)
				}
				if err != nil {
					l.close()
					return -1, nil, &os.PathError{Op: "mkdir", Path: "/" + joinRel(l.parentRel, c), Err: err}
				}
			}
		}
		flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		fd, err := unix.Openat(l.parent, c, flags, 0)
		if err != nil {
			l.close()
			if err == unix.ELOOP || err == unix.ENOTDIR {
				err = unix.ENOTDIR // raced by something that is not a directory
			}
			return -1, nil, &os.PathError{Op: "mkdir", Path: "/" + joinRel(l.parentRel, c), Err: err}
		}
		if i == len(comps)-1 {
			l.name, l.missing = c, nil
			return fd, l, nil
		}
		unix.Close(l.parent)
		l.parent, l.parentRel = fd, joinRel(l.parentRel, c)
	}
	panic("unreachable")
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size > 1<<16 {
			return "", errors.New("symlink target too long")
		}
	}
}

// components splits a slash-separated path into its names, dropping empty
// ones and ".", keeping "..".
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// joinRel joins relative path parts, skipping empty ones ("" = the root).
func joinRel(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p)
	}
	return b.String()
}
