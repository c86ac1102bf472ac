package copier

import (
	"context"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/compression"
)

// visitor receives what the walker selects: the writer copies it, the
// checksummer only hashes file content. Both see the same entries, so
// Copy's digest is Checksum's.
type visitor interface {
	// top prepares the destination for copying a directory's contents.
	top() error
	// dir creates or merges a directory below the top; its entries follow.
	dir(e *entry) error
	// endDir applies a directory's metadata after its entries (for the
	// top: its times only, as fsutil).
	endDir(e *entry) error
	// leaf copies a non-directory (for a file match, m names it) and
	// returns a regular file's content digest.
	leaf(m *match, e *entry) ([]byte, error)
	// archive extracts a file match that is an archive (ADD) and returns
	// the archive's digest.
	archive(m *match, e *entry, a compression.Kind) ([]byte, error)
}

// entry is one source file, directory, link, … as the walker hands it over.
type entry struct {
	rel        string      // path below the match ("" = the match itself)
	real       string      // its real path in the source root, for messages
	name       string      // base name
	dirfd      int         // source parent directory, for *at calls
	st         unix.Stat_t // lstat
	fd         int         // open on regular files and directories, else -1
	link       string      // symlink target
	hardlink   string      // rel of the earlier entry this one is a hardlink of
	uid, gid   int         // after --chown
	mode       uint32      // permission and special bits after --chmod
	xattrs     []xattr     // as copied (see skipXattr)
	pending    bool        // a directory not yet handed to the visitor
	dirEntered bool        // handed to dir (needs endDir)
}

func (e *entry) kind() uint32 { return e.st.Mode & unix.S_IFMT }

// walker selects entries below each match and records the digest.
type walker struct {
	ctx     context.Context
	tree    *sourceTree
	opts    *Options
	src     Source
	v       visitor
	rec     *recorder
	exclude *patternmatcher.PatternMatcher
	include *patternmatcher.PatternMatcher // --parents pattern of the current spec
	incl    []string                       // its elements, for pruning
	inodes  map[[2]uint64]string           // hardlinks within one match: (dev, ino) -> first rel
	pending []*entry                       // directories not yet created, outermost first
	dirBuf  []byte                         // for reading directories (names are copied out)
}

func newWalker(ctx context.Context, src Source, r *root, opts *Options, v visitor) (*walker, error) {
	w := &walker{ctx: ctx, tree: &sourceTree{root: r, ignore: src.Ignore}, opts: opts, src: src, v: v, rec: newRecorder()}
	if len(opts.Excludes) > 0 {
		pm, err := patternmatcher.New(opts.Excludes)
		if err != nil {
			return nil, fmt.Errorf("--exclude: %w", err)
		}
		w.exclude = pm
	}
	return w, nil
}

// match walks one match: a directory's contents, or one entry.
func (w *walker) match(sp spec, m *match) error {
	w.inodes = map[[2]uint64]string{}
	w.include, w.incl = nil, nil
	if sp.include != "" {
		pm, err := patternmatcher.New([]string{sp.include})
		if err != nil {
			return fmt.Errorf("--parents: %w", err)
		}
		w.include, w.incl = pm, strings.Split(sp.include, "/")
	}
	e := &entry{name: path.Base("/" + m.name), real: m.rel, dirfd: m.l.parent, st: *m.l.st, fd: -1}
	if m.isDir() {
		w.rec.match(m.name, 'd')
		fd, err := unix.Openat(m.l.parent, dotIfEmpty(m.l.name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: "/" + m.rel, Err: err}
		}
		e.fd = fd
		defer unix.Close(fd)
		if err := w.v.top(); err != nil {
			return err
		}
		if err := w.children(e, m.rel, matchInfos{}); err != nil {
			return err
		}
		return w.v.endDir(e)
	}
	w.rec.match(m.name, 'f')
	if err := w.load(e, m.l.name); err != nil {
		return err
	}
	if e.fd >= 0 {
		defer unix.Close(e.fd)
		if w.opts.Unpack {
			kind, ok, err := detectArchive(e.fd, e.st.Size)
			if err != nil {
				return err
			}
			if ok {
				sum, err := w.v.archive(m, e, kind)
				if err != nil {
					return err
				}
				w.rec.archive(e, w.opts.Chown, sum)
				return nil
			}
		}
	}
	sum, err := w.v.leaf(m, e)
	if err != nil {
		return err
	}
	w.rec.entry(e, sum)
	return nil
}

// matchInfos are the parents' pattern results, passed down the walk.
type matchInfos struct{ include, exclude, ignore patternmatcher.MatchInfo }

// children walks a directory's entries in name order (as fsutil's
// os.ReadDir), selecting each by --parents pattern, --exclude and
// .dockerignore as fsutil copy and its context filter do: a directory that
// is not selected itself may still hold selected entries, and is then
// created just before the first of them, with its own metadata.
func (w *walker) children(dir *entry, realDir string, pmi matchInfos) error {
	if w.dirBuf == nil {
		w.dirBuf = make([]byte, 32<<10)
	}
	names, err := readDirNames(dir.fd, w.dirBuf)
	if err != nil {
		return fmt.Errorf("read /%s: %w", realDir, err)
	}
	sort.Strings(names)
	dirfd := dir.fd
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		real := joinRel(realDir, name)
		e := &entry{rel: joinRel(dir.rel, name), real: real, name: name, dirfd: dirfd, fd: -1}
		sel, mi, err := w.selectEntry(e.rel, real, pmi)
		if err != nil {
			return err
		}
		if sel == skip {
			continue
		}
		if err := unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: "/" + real, Err: err}
		}
		if e.kind() != unix.S_IFDIR {
			if sel != selected {
				continue
			}
			if err := w.leafEntry(e); err != nil {
				return err
			}
			continue
		}
		if err := w.dirEntry(e, real, sel, mi); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) leafEntry(e *entry) error {
	if err := w.materialize(); err != nil {
		return err
	}
	if err := w.load(e, e.name); err != nil {
		return err
	}
	if e.fd >= 0 {
		defer unix.Close(e.fd)
	}
	sum, err := w.v.leaf(nil, e)
	if err != nil {
		return err
	}
	w.rec.entry(e, sum)
	return nil
}

func (w *walker) dirEntry(e *entry, real string, sel selection, mi matchInfos) error {
	if err := w.load(e, e.name); err != nil {
		return err
	}
	defer unix.Close(e.fd)
	if sel == selected {
		if err := w.materialize(); err != nil {
			return err
		}
		if err := w.enter(e); err != nil {
			return err
		}
	} else {
		e.pending = true
		w.pending = append(w.pending, e)
		defer func() { w.pending = w.pending[:len(w.pending)-1] }()
	}
	if err := w.children(e, real, mi); err != nil {
		return err
	}
	if !e.dirEntered {
		return nil
	}
	return w.v.endDir(e)
}

// materialize creates the pending directories above an entry about to be
// copied.
func (w *walker) materialize() error {
	for _, p := range w.pending {
		if p.pending {
			p.pending = false
			if err := w.enter(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *walker) enter(e *entry) error {
	w.rec.entry(e, nil)
	e.dirEntered = true
	return w.v.dir(e)
}

type selection int

const (
	skip     selection = iota // neither the entry nor anything below it
	selected                  // the entry is copied
	descend                   // a directory that is not copied itself but may hold entries that are
)

// selectEntry applies the three filters to an entry not yet stat'ed.
// Ignored and excluded paths are left out without a stat when no "!"
// pattern could bring back something below them (fsutil's shortcut).
func (w *walker) selectEntry(rel, real string, pmi matchInfos) (selection, matchInfos, error) {
	var mi matchInfos
	incl, excl, ign := true, false, false
	var err error
	if w.include != nil {
		if incl, mi.include, err = w.include.MatchesUsingParentResults(rel, pmi.include); err != nil {
			return skip, mi, fmt.Errorf("--parents: %w", err)
		}
	}
	if w.exclude != nil {
		if excl, mi.exclude, err = w.exclude.MatchesUsingParentResults(rel, pmi.exclude); err != nil {
			return skip, mi, fmt.Errorf("--exclude: %w", err)
		}
	}
	if ig := w.tree.ignore; ig != nil {
		if ign, mi.ignore, err = ig.MatchesUsingParentResults(real, pmi.ignore); err != nil {
			return skip, mi, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	if incl && !excl && !ign {
		return selected, mi, nil
	}
	if excl && !w.exclude.Exclusions() || ign && !w.tree.ignore.Exclusions() {
		return skip, mi, nil
	}
	if !incl && !w.mayMatchBelow(rel) {
		return skip, mi, nil
	}
	return descend, mi, nil
}

// mayMatchBelow reports whether the --parents pattern could match rel or a
// path below it: each element of rel must match the pattern's element at
// its depth, until the pattern has a "**". It only prunes the walk.
func (w *walker) mayMatchBelow(rel string) bool {
	if strings.HasPrefix(w.incl[0], "!") {
		return true
	}
	for i, c := range strings.Split(rel, "/") {
		if i >= len(w.incl) {
			return false // deeper than the pattern, and rel itself did not match
		}
		if strings.Contains(w.incl[i], "**") {
			return true
		}
		if ok, err := path.Match(w.incl[i], c); err != nil || !ok {
			return err != nil
		}
	}
	return true
}

// load stats the entry's details the visitors and the digest need: it opens
// regular files and directories (never following a symlink; O_NONBLOCK or
// O_DIRECTORY so that a FIFO swapped in cannot block), reads link targets
// and xattrs, and settles owner and mode.
func (w *walker) load(e *entry, name string) error {
	switch e.kind() {
	case unix.S_IFREG, unix.S_IFDIR:
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
		if e.kind() == unix.S_IFDIR {
			flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_DIRECTORY | unix.O_CLOEXEC
		}
		fd, err := unix.Openat(e.dirfd, name, flags, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: "/" + e.real, Err: err}
		}
		e.fd = fd
		if e.kind() == unix.S_IFREG && e.st.Nlink > 1 {
			key := [2]uint64{e.st.Dev, e.st.Ino}
			if first, ok := w.inodes[key]; ok {
				e.hardlink = first
			} else {
				w.inodes[key] = e.rel
			}
		}
	case unix.S_IFLNK:
		target, err := readlinkat(e.dirfd, name)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: "/" + e.real, Err: err}
		}
		e.link = target
	}
	xs, err := readXattrs(e, name, "/"+e.real)
	if err != nil {
		if e.fd >= 0 {
			unix.Close(e.fd)
			e.fd = -1
		}
		return err
	}
	e.xattrs = xs
	e.uid, e.gid = w.owner(&e.st)
	e.mode = w.mode(&e.st)
	return nil
}

// owner is --chown, else the source's owner for a stage or image source,
// else 0:0 (what BuildKit's client sends for context files).
func (w *walker) owner(st *unix.Stat_t) (int, int) {
	switch {
	case w.opts.Chown != nil:
		return w.opts.Chown.UID, w.opts.Chown.GID
	case w.src.KeepOwners:
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

// mode applies --chmod (to files and directories alike, as fsutil's
// copyFileInfo) to the source mode.
func (w *walker) mode(st *unix.Stat_t) uint32 {
	m := st.Mode & 0o7777
	if w.opts.Chmod == nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return m
	}
	fm := modeOf(m)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		fm |= os.ModeDir
	}
	return unixMode(w.opts.Chmod.Apply(fm))
}

// modeOf converts st_mode permission and special bits to an os.FileMode.
func modeOf(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// unixMode turns an os.FileMode's permission and special bits into st_mode bits.
func unixMode(fm os.FileMode) uint32 {
	m := uint32(fm.Perm())
	if fm&os.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if fm&os.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if fm&os.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// readDirNames lists a directory's names (not "." and "..").
func readDirNames(fd int, buf []byte) ([]string, error) {
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
