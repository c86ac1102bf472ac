package native

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/snapshot"
)

// entry is what Prepare records of a tree entry (see the package doc).
type entry struct {
	id    fileID
	ctime unix.StatxTimestamp
	meta  string // a directory's mode, owner and xattrs (see dirMeta)
}

// fileID tells files apart: an inode number can be reused at once by a
// file made after the first is deleted, its birth time cannot (zero where
// the filesystem keeps none).
type fileID struct {
	ino   uint64
	btime unix.StatxTimestamp
}

const statxMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_UID | unix.STATX_GID | unix.STATX_INO | unix.STATX_CTIME | unix.STATX_BTIME

func statx(p string) (*unix.Statx_t, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, statxMask, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Mask&unix.STATX_BTIME == 0 {
		st.Btime = unix.StatxTimestamp{}
	}
	return &st, nil
}

func entryOf(st *unix.Statx_t) entry {
	return entry{id: fileID{ino: st.Ino, btime: st.Btime}, ctime: st.Ctime}
}

func isDir(st *unix.Statx_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// readNames lists a directory.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", dir, err)
	}
	return names, nil
}

// record returns the entries of tree by relative path, tree itself as "".
func record(tree string) (map[string]entry, error) {
	out := map[string]entry{}
	var walk func(rel string) error
	walk = func(rel string) error {
		st, err := statx(filepath.Join(tree, rel))
		if err != nil {
			return err
		}
		e := entryOf(st)
		if !isDir(st) {
			out[rel] = e
			return nil
		}
		if e.meta, err = dirMeta(filepath.Join(tree, rel), st); err != nil {
			return err
		}
		out[rel] = e
		names, err := readNames(filepath.Join(tree, rel))
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := walk(path.Join(rel, n)); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk("")
}

func latestChange(entries map[string]entry) unix.StatxTimestamp {
	var latest unix.StatxTimestamp
	for _, e := range entries {
		if after(e.ctime, latest) {
			latest = e.ctime
		}
	}
	return latest
}

func after(a, b unix.StatxTimestamp) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}

// waitTick returns once a file changed now in dir gets a ctime after
// latest: filesystems stamp changes with a clock that may advance only
// every few milliseconds, and a change within the tick of the recording
// would otherwise go unseen.
func waitTick(dir string, latest unix.StatxTimestamp) error {
	probe := filepath.Join(dir, "tick")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return err
	}
	defer os.Remove(probe)
	now := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, probe, now, 0); err != nil {
			return fmt.Errorf("touching %s: %w", probe, err)
		}
		st, err := statx(probe)
		if err != nil {
			return err
		}
		if after(st.Ctime, latest) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the clock of %s did not pass the snapshot's latest change (%d.%09d): is it set back?", dir, latest.Sec, latest.Nsec)
		}
		time.Sleep(time.Millisecond)
	}
}

// changes is a snapshot.Selection: what differs between a tree and what
// Prepare recorded of it.
type changes struct {
	pick    map[string]bool     // entries to write → opaque
	deleted map[string][]string // directory → names gone
}

func (c *changes) Pick(rel string) (write, opaque bool) {
	opaque, write = c.pick[rel]
	return write, opaque
}

func (c *changes) Deleted(dir string) []string { return c.deleted[dir] }

func (c *changes) empty() bool { return len(c.pick) == 0 && len(c.deleted) == 0 }

// differ computes changes.
type differ struct {
	tree    string
	before  map[string]entry
	now     map[string]bool // paths present
	plain   map[string]bool // directories walked as kept from the parent
	changes *changes
}

// diff compares tree with before, what Prepare recorded of it.
func diff(tree string, before map[string]entry) (*changes, error) {
	d := &differ{tree: tree, before: before, now: map[string]bool{}, plain: map[string]bool{"": true},
		changes: &changes{pick: map[string]bool{}, deleted: map[string][]string{}}}
	if _, err := d.dir("", false); err != nil {
		return nil, err
	}
	d.whiteouts()
	return d.changes, nil
}

// dir walks the directory rel; all: everything in it is new (it is new
// or replaced one of the parent's). It says whether anything in it goes
// into the layer.
func (d *differ) dir(rel string, all bool) (bool, error) {
	names, err := readNames(filepath.Join(d.tree, rel))
	if err != nil {
		return false, err
	}
	changed := false
	for _, n := range names {
		p := path.Join(rel, n)
		write, err := d.entry(p, all)
		if err != nil {
			return false, err
		}
		changed = changed || write
	}
	return changed, nil
}

// entry decides about the entry rel and, for a directory, its contents.
func (d *differ) entry(rel string, all bool) (bool, error) {
	st, err := statx(filepath.Join(d.tree, rel))
	if err != nil {
		return false, err
	}
	d.now[rel] = true
	now := entryOf(st)
	prev, had := d.before[rel]
	replaced := had && prev.id != now.id
	write := all || !had || replaced || prev.ctime != now.ctime
	opaque := isDir(st) && replaced && !all
	if isDir(st) {
		fresh := all || !had || replaced
		if !fresh {
			d.plain[rel] = true
		}
		below, err := d.dir(rel, fresh)
		if err != nil {
			return false, err
		}
		if write && !fresh && !below {
			// Nothing in it changed, only its times (a file made and
			// removed in it): as BuildKit's differ (sameDirent) and the
			// overlay store, it stays out unless its mode, owner or
			// xattrs changed.
			meta, err := dirMeta(filepath.Join(d.tree, rel), st)
			if err != nil {
				return false, err
			}
			write = meta != prev.meta
		}
		write = write || below
	}
	if write {
		d.changes.pick[rel] = opaque
	}
	return write, nil
}

// whiteouts lists the recorded entries that are gone, in directories kept
// from the parent (a new or replaced one hides them anyway), and puts
// those directories in the layer.
func (d *differ) whiteouts() {
	for rel := range d.before {
		if rel == "" || d.now[rel] {
			continue
		}
		dir := parentOf(rel)
		if !d.plain[dir] {
			continue
		}
		d.changes.deleted[dir] = append(d.changes.deleted[dir], path.Base(rel))
		for a := dir; a != ""; a = parentOf(a) {
			if _, ok := d.changes.pick[a]; ok {
				break
			}
			d.changes.pick[a] = false
		}
	}
}

func parentOf(rel string) string {
	if dir := path.Dir(rel); dir != "." {
		return dir
	}
	return ""
}

// dirMeta is what makes a directory differ from its parent's copy besides
// its contents and times: mode, owner and xattrs.
func dirMeta(p string, st *unix.Statx_t) (string, error) {
	xattrs, err := snapshot.FileXattrs(p)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%o %d %d", st.Mode, st.Uid, st.Gid)
	for _, n := range slices.Sorted(maps.Keys(xattrs)) {
		fmt.Fprintf(&b, " %q=%q", n, xattrs[n])
	}
	return b.String(), nil
}
