package copier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/compression"
)

// errSkippedDevice: mknod of a device node was refused (EPERM, rootless);
// like rootless podman, the node is left out and counted.
var errSkippedDevice = errors.New("device node skipped")

// writer is the visitor that copies into the destination root.
type writer struct {
	ctx       context.Context
	dest      *root
	opts      *Options
	destSlash bool // Dest ends with "/" (or "/."): always a directory
	res       Result
	buf       []byte
	stack     []*destDir        // destination directories of the current match, top first
	links     map[string]string // source rel of a multiply-linked file -> where it was copied
	files     map[string]string // where a file match was copied -> that match's name
}

// destDir is an open destination directory.
type destDir struct {
	fd  int
	l   *lookup // its parent and name, for setting its times
	rel string  // relative to the destination root
}

func newWriter(ctx context.Context, dest *root, opts *Options) *writer {
	d := opts.Dest
	return &writer{
		ctx: ctx, dest: dest, opts: opts,
		destSlash: strings.HasSuffix(d, "/") || strings.HasSuffix(d, "/.") || d == "." || d == "",
		buf:       make([]byte, bufSize),
		links:     map[string]string{},
		files:     map[string]string{},
	}
}

// close closes the directories an interrupted copy left open.
func (w *writer) close() {
	for len(w.stack) > 0 {
		w.pop()
	}
}

func (w *writer) push(d *destDir) { w.stack = append(w.stack, d) }

func (w *writer) pop() {
	d := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	unix.Close(d.fd)
	d.l.close()
}

func (w *writer) cur() *destDir { return w.stack[len(w.stack)-1] }

// dirPerm is the mode of directories Copy creates on the way: 0755, or
// an octal --chmod's permission bits (fsutil's MkdirAll gets ci.Mode).
func (w *writer) dirPerm() uint32 {
	if c := w.opts.Chmod; c != nil && c.Octal != nil {
		return uint32(c.Octal.Perm())
	}
	return 0o755
}

// created owns a directory Copy created on the way: --chown's owner, or
// left to the creating process (root), as fsutil's MkdirAll.
func (w *writer) created(parent int, name string) error {
	if c := w.opts.Chown; c != nil {
		if err := unix.Fchownat(parent, name, c.UID, c.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return chownError(name, c.UID, c.GID, err)
		}
	}
	return nil
}

// destination does fsutil Copy's first steps for one match: make sure the
// directory Dest is in (or Dest itself, when it ends with "/") exists,
// then resolve Dest in the root, following symlinks (the last one too).
func (w *writer) destination() (*lookup, error) {
	ensure := w.opts.Dest
	if !w.destSlash {
		ensure = path.Dir(path.Clean("/" + ensure))
	}
	fd, l, err := w.dest.mkdirAll(ensure, w.dirPerm(), w.created)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	unix.Close(fd)
	l.close()
	l, err = w.dest.resolve(w.opts.Dest, true, nil)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	return l, nil
}

// top prepares the directory a directory match's contents go into: Dest,
// created if missing; an existing directory is merged into.
func (w *writer) top() error {
	l, err := w.destination()
	if err != nil {
		return err
	}
	rel, st := l.rel(), l.st
	l.close()
	if st != nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("cannot copy a directory to the non-directory %s", "/"+rel)
	}
	fd, dl, err := w.dest.mkdirAll(rel, w.dirPerm(), w.created)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	w.push(&destDir{fd: fd, l: dl, rel: rel})
	return nil
}

// dir creates (or merges into) a directory. Its mode is set after its
// entries, so a read-only source directory can still be filled.
func (w *writer) dir(e *entry) error {
	p := w.cur()
	rel := joinRel(p.rel, e.name)
	err := unix.Mkdirat(p.fd, e.name, 0o700)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(p.fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("cannot copy directory %s to the non-directory /%s", e.rel, rel)
		}
	}
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: "/" + rel, Err: err}
	}
	fd, err := unix.Openat(p.fd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	pfd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return err
	}
	w.push(&destDir{fd: fd, l: &lookup{parent: pfd, parentRel: p.rel, name: e.name}, rel: rel})
	w.res.Files++
	return nil
}

// endDir gives a directory its metadata once its entries are in. The top
// directory keeps its own mode and owner and only takes the source's
// times (fsutil copies no file info to a directory it did not create there).
func (w *writer) endDir(e *entry) error {
	d := w.cur()
	defer w.pop()
	if e.rel != "" {
		if err := fileMeta(d.fd, d.rel, e.uid, e.gid, e.mode, e.xattrs); err != nil {
			return err
		}
	}
	if d.l.name == "" {
		return setTimesFD(d.fd, &e.st)
	}
	return setTimes(d.l.parent, d.l.name, &e.st)
}

// leaf copies a non-directory entry; for a file match (m != nil) it first
// works out its destination as fsutil's prepareTargetDir: inside Dest when
// Dest is a directory, else Dest itself.
func (w *writer) leaf(m *match, e *entry) ([]byte, error) {
	var parent int
	var rel string
	if m != nil {
		fd, r, err := w.fileDestination(m)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		parent, rel = fd, r
	} else {
		parent, rel = w.cur().fd, joinRel(w.cur().rel, e.name)
	}
	name := path.Base("/" + rel)
	sum, err := w.write(parent, name, rel, e)
	if err == errSkippedDevice {
		w.res.SkippedDevices++
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	w.res.Files++
	return sum, nil
}

func (w *writer) fileDestination(m *match) (int, string, error) {
	l, err := w.destination()
	if err != nil {
		return -1, "", err
	}
	rel := l.rel()
	if l.isDir() {
		rel = joinRel(rel, path.Base("/"+m.name))
	}
	l.close()
	if !w.destSlash {
		if prev, ok := w.files[rel]; ok {
			return -1, "", fmt.Errorf("%q and %q would both be copied to the file /%s: end the destination with \"/\" to copy several sources into a directory", prev, m.name, rel)
		}
		w.files[rel] = m.name
	}
	fd, dl, err := w.dest.mkdirAll(path.Dir("/"+rel), w.dirPerm(), w.created)
	if err != nil {
		return -1, "", fmt.Errorf("destination: %w", err)
	}
	dl.close()
	return fd, rel, nil
}

func (w *writer) write(parent int, name, rel string, e *entry) ([]byte, error) {
	switch {
	case e.hardlink != "":
		return nil, w.hardlink(parent, name, rel, e)
	case e.kind() == unix.S_IFREG:
		return w.regular(parent, name, rel, e)
	case e.kind() == unix.S_IFLNK:
		err := replacing(parent, name, rel, func() error { return unix.Symlinkat(e.link, parent, name) })
		if err != nil {
			return nil, &os.PathError{Op: "symlink", Path: "/" + rel, Err: err}
		}
		return nil, w.meta(parent, name, rel, e, false)
	case e.kind() == unix.S_IFSOCK:
		// fsutil's copyDevice clears S_IFSOCK: a socket becomes an empty file.
		err := replacing(parent, name, rel, func() error { return unix.Mknodat(parent, name, unix.S_IFREG|0o600, 0) })
		if err != nil {
			return nil, &os.PathError{Op: "create", Path: "/" + rel, Err: err}
		}
		return nil, w.meta(parent, name, rel, e, true)
	}
	err := replacing(parent, name, rel, func() error {
		return unix.Mknodat(parent, name, e.kind()|0o600, int(e.st.Rdev))
	})
	if err == unix.EPERM && e.kind() != unix.S_IFIFO {
		return nil, errSkippedDevice
	}
	if err != nil {
		return nil, &os.PathError{Op: "mknod", Path: "/" + rel, Err: err}
	}
	return nil, w.meta(parent, name, rel, e, true)
}

func (w *writer) regular(parent int, name, rel string, e *entry) ([]byte, error) {
	var fd int
	err := replacing(parent, name, rel, func() (err error) {
		fd, err = unix.Openat(parent, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: "/" + rel, Err: err}
	}
	defer unix.Close(fd)
	sum, err := copyData(fd, e.fd, e.st.Size, w.buf)
	if err != nil {
		return nil, fmt.Errorf("copy to /%s: %w", rel, err)
	}
	w.res.Bytes += e.st.Size
	if e.st.Nlink > 1 {
		w.links[e.rel] = rel
	}
	if err := fileMeta(fd, rel, e.uid, e.gid, e.mode, e.xattrs); err != nil {
		return nil, err
	}
	return sum, setTimes(parent, name, &e.st)
}

// fileMeta gives an open file or directory its owner, mode and xattrs, in
// that order: chown clears setuid bits and file capabilities.
func fileMeta(fd int, rel string, uid, gid int, mode uint32, xattrs []xattr) error {
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return chownError("/"+rel, uid, gid, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod /%s: %w", rel, err)
	}
	if err := writeXattrs(fd, -1, "", xattrs); err != nil {
		return fmt.Errorf("/%s: %w", rel, err)
	}
	return nil
}

// hardlink links an entry to where its first link was copied (fsutil keeps
// hardlinks among the entries of one match).
func (w *writer) hardlink(parent int, name, rel string, e *entry) error {
	first, ok := w.links[e.hardlink]
	if !ok {
		return fmt.Errorf("hardlink /%s: %s was not copied", rel, e.hardlink)
	}
	fd, l, err := w.dest.mkdirAll(path.Dir("/"+first), 0o755, nil)
	if err != nil {
		return fmt.Errorf("hardlink /%s: %w", rel, err)
	}
	defer unix.Close(fd)
	l.close()
	err = replacing(parent, name, rel, func() error { return unix.Linkat(fd, path.Base(first), parent, name, 0) })
	if err != nil {
		return &os.PathError{Op: "link", Path: "/" + rel, Err: err}
	}
	return nil
}

// meta sets a non-regular entry's owner, mode (not on symlinks), xattrs
// and times, in that order: chown clears setuid bits and capabilities.
func (w *writer) meta(parent int, name, rel string, e *entry, chmod bool) error {
	if err := unix.Fchownat(parent, name, e.uid, e.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return chownError("/"+rel, e.uid, e.gid, err)
	}
	if chmod {
		// Not a symlink (just created by us), so fchmodat's following is moot.
		if err := unix.Fchmodat(parent, name, e.mode, 0); err != nil {
			return fmt.Errorf("chmod /%s: %w", rel, err)
		}
	}
	if err := writeXattrs(-1, parent, name, e.xattrs); err != nil {
		return fmt.Errorf("/%s: %w", rel, err)
	}
	return setTimes(parent, name, &e.st)
}

// chownError explains the two ways chown fails in a build: the process is
// not root in its user namespace (EPERM), or the id is not mapped in it
// (EINVAL).
func chownError(name string, uid, gid int, err error) error {
	hint := ""
	switch err {
	case unix.EPERM:
		hint = " (a copy runs as root, or as root of the build's user namespace)"
	case unix.EINVAL:
		hint = " (is the id mapped? a subuid range of 65536 ids covers 0-65535)"
	}
	return fmt.Errorf("chown %s %d:%d: %w%s", name, uid, gid, err, hint)
}

// replacing runs create; if the name is taken it removes what is there and
// runs it again. A directory is not replaced by a non-directory (fsutil's
// ensureEmptyFileTarget refuses it too).
func replacing(parent int, name, rel string, create func() error) error {
	err := create()
	if err != unix.EEXIST {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("cannot replace the directory /%s with a non-directory", rel)
	}
	if err := unix.Unlinkat(parent, name, 0); err != nil {
		return err
	}
	return create()
}

// archive extracts an archive match into Dest, which becomes a directory
// (BuildKit's unpack: MkdirAll(dest, 0755) with --chown, then Untar).
func (w *writer) archive(m *match, e *entry, kind compression.Kind) ([]byte, error) {
	fd, l, err := w.dest.mkdirAll(w.opts.Dest, 0o755, w.created)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	rel := l.rel()
	l.close()
	x := &extractor{ctx: w.ctx, root: &root{fd: fd, path: "/" + rel}, chown: w.opts.Chown, res: &w.res}
	defer unix.Close(fd)
	sum, err := x.run(e.fd, e.st.Size, kind)
	if err != nil {
		return nil, fmt.Errorf("extract %s into /%s: %w", m.name, rel, err)
	}
	return sum, nil
}

func setTimes(dirfd int, name string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", name, err)
	}
	return nil
}

// setTimesFD sets the times of an open directory that has no parent here
// (the root of the destination).
func setTimesFD(fd int, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
	if err == unix.EINVAL || err == unix.ENOENT {
		// Kernels before 5.8 lack AT_EMPTY_PATH here.
		err = unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts, 0)
	}
	if err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
