package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/ctxio"
)

// OCI layer whiteout names (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// WriteLayerTar walks an overlay upper directory and writes it as an OCI
// layer tar to w. It returns the number of tar entries written (files,
// directories, links, devices, whiteouts) and the bytes of regular-file
// content.
//
// The output is deterministic for a given tree: entries come in tree order
// (siblings sorted by their on-disk name bytes, a directory before its
// children; a whiteout sits where the name it hides would), headers
// are PAX with no atime/ctime, empty uname/gname, and mtime truncated to whole
// seconds (as moby/BuildKit do). Paths are relative with no "./" prefix;
// directories end in "/". The upper directory itself is not an entry.
//
// Overlay's own markers are translated: a whiteout (character device 0/0)
// becomes an empty regular file DIR/.wh.NAME, mode 0600, owned by 0:0,
// with DIR's mtime (the time of the deletion, when it was DIR's last
// change: a whiteout's header depends on the tree alone, so every backend
// writes the same); an opaque directory (user.overlay.opaque or
// trusted.overlay.opaque = "y") becomes the directory entry followed by
// DIR/.wh..wh..opq. Extended attributes in the overlay namespaces are
// never copied; all others (user.*, security.capability, trusted.*) go
// into SCHILY.xattr.* PAX records. Files with several links inside the
// layer become hard links (TypeLink) to the first path written. Sockets
// are skipped: tar cannot hold them.
func WriteLayerTar(w io.Writer, upper string) (files int, bytes int64, err error) {
	return writeLayerTar(context.Background(), w, upper)
}

// A Selection picks the entries of a whole tree that make a layer, for a
// tree that is not an overlay upper directory: package native's
// snapshots are full copies of their parent's tree. Paths are
// slash-separated and relative to the tree ("" is the tree itself).
type Selection interface {
	// Pick tells whether the entry rel goes into the layer (a
	// directory's children are then asked about in turn) and, for a
	// directory, whether it replaced the parent's one (opaque: it hides
	// all the parent had below it).
	Pick(rel string) (write, opaque bool)
	// Deleted lists the names in directory dir that the parent's tree
	// had and this one lacks: their whiteouts.
	Deleted(dir string) []string
}

// WriteTreeTar writes the layer tar of the entries of tree that sel
// picks, in WriteLayerTar's format, and returns the same counts. Since
// both write the same headers for the same files, a backend that copies
// trees gives the DiffIDs the overlay Store gives.
func WriteTreeTar(ctx context.Context, w io.Writer, tree string, sel Selection) (files int, bytes int64, err error) {
	lw := newLayerWriter(ctx, w, tree)
	lw.sel = sel
	err = lw.run()
	return lw.files, lw.bytes, err
}

type inodeKey struct {
	dev, ino uint64
}

type layerWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	upper string
	sel   Selection           // nil: upper is an overlay upper dir, all of it goes
	links map[inodeKey]string // first tar path of each multiply-linked inode
	files int
	bytes int64
	buf   []byte

	// Optional observers (Commit's layer record).
	onHeader func(*tar.Header)
	// onOverlayXattrs reports a path (relative to upper) carrying overlay
	// xattrs, all of their names, and whether it is an opaque directory.
	onOverlayXattrs func(rel string, opaque bool, names []string)
}

func newLayerWriter(ctx context.Context, w io.Writer, upper string) *layerWriter {
	return &layerWriter{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		upper: upper,
		links: map[inodeKey]string{},
		buf:   copyBuffers.get(),
	}
}

func writeLayerTar(ctx context.Context, w io.Writer, upper string) (int, int64, error) {
	lw := newLayerWriter(ctx, w, upper)
	err := lw.run()
	return lw.files, lw.bytes, err
}

// run writes the whole tar, end-of-archive included.
func (lw *layerWriter) run() error {
	defer func() { copyBuffers.put(lw.buf); lw.buf = nil }()
	if err := lw.walkDir(""); err != nil {
		return err
	}
	if err := lw.tw.Close(); err != nil {
		return fmt.Errorf("finishing layer tar of %s: %w", lw.upper, err)
	}
	return nil
}

// dirEntry is a name walkDir writes.
type dirEntry struct {
	name     string
	whiteout bool // Selection.Deleted
	opaque   bool // Selection.Pick
}

// walkDir writes the entries of the directory rel (relative to upper, "" for
// upper itself) and, recursively, their children.
func (lw *layerWriter) walkDir(rel string) error {
	dir := filepath.Join(lw.upper, rel)
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(int(f.Fd()), &st)
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", dir, err)
	}
	for _, e := range lw.entries(rel, names) {
		if err := lw.ctx.Err(); err != nil {
			return err
		}
		p := path.Join(rel, e.name)
		if e.whiteout {
			err = lw.writeWhiteout(p, st.Mtim.Sec, dir)
		} else {
			err = lw.writeEntry(p, e.opaque, st.Mtim.Sec)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// entries sorts the names of directory rel, keeping those the Selection
// picks and adding its whiteouts.
func (lw *layerWriter) entries(rel string, names []string) []dirEntry {
	out := make([]dirEntry, 0, len(names))
	for _, n := range names {
		e := dirEntry{name: n}
		if lw.sel != nil {
			var write bool
			if write, e.opaque = lw.sel.Pick(path.Join(rel, n)); !write {
				continue
			}
		}
		out = append(out, e)
	}
	if lw.sel != nil {
		for _, n := range lw.sel.Deleted(rel) {
			out = append(out, dirEntry{name: n, whiteout: true})
		}
	}
	slices.SortFunc(out, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	return out
}

// writeWhiteout writes the whiteout of rel, in a directory whose mtime is
// dirMtime (seconds).
func (lw *layerWriter) writeWhiteout(rel string, dirMtime int64, full string) error {
	dir, base := path.Split(rel)
	return lw.writeHeader(&tar.Header{
		Name:     dir + whiteoutPrefix + base,
		Typeflag: tar.TypeReg,
		Mode:     0o600,
		ModTime:  time.Unix(dirMtime, 0),
		Format:   tar.FormatPAX,
	}, full)
}

// writeEntry writes the entry rel; opaque marks a directory that replaced
// the parent's (Selection), dirMtime is its directory's mtime.
func (lw *layerWriter) writeEntry(rel string, opaque bool, dirMtime int64) error {
	full := filepath.Join(lw.upper, rel)
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return fmt.Errorf("stat %s: %w", full, err)
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	fmtType := st.Mode & unix.S_IFMT

	// Overlay whiteouts are checked before hard links: the kernel shares
	// one inode among whiteouts, so they often have nlink > 1.
	if fmtType == unix.S_IFCHR && st.Rdev == 0 {
		return lw.writeWhiteout(rel, dirMtime, full)
	}

	xattrs, ovlOpaque, ovl, err := readXattrs(full, fmtType == unix.S_IFDIR)
	if err != nil {
		return err
	}
	if len(ovl) > 0 && lw.onOverlayXattrs != nil {
		lw.onOverlayXattrs(rel, ovlOpaque, ovl)
	}
	// A copied tree's overlay xattrs are a step's doing, not overlay's.
	opaque = opaque || ovlOpaque && lw.sel == nil
	if len(xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(xattrs))
		for k, v := range xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}

	switch fmtType {
	case unix.S_IFDIR:
		return lw.writeDir(rel, hdr, opaque, full)
	case unix.S_IFREG:
		return lw.writeFile(rel, hdr, &st, full)
	case unix.S_IFLNK:
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", full, err)
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		return lw.writeHeader(hdr, full)
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		return lw.writeHeader(hdr, full)
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if fmtType == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
		return lw.writeHeader(hdr, full)
	case unix.S_IFSOCK:
		return nil
	default:
		return fmt.Errorf("%s: unsupported file type %#o", full, fmtType)
	}
}

// writeDir writes a directory, its opaque marker and its children.
func (lw *layerWriter) writeDir(rel string, hdr *tar.Header, opaque bool, full string) error {
	hdr.Typeflag = tar.TypeDir
	hdr.Name = rel + "/"
	if err := lw.writeHeader(hdr, full); err != nil {
		return err
	}
	if opaque {
		wh := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     rel + "/" + whiteoutOpaque,
			Mode:     hdr.Mode & 0o777,
			Uid:      hdr.Uid,
			Gid:      hdr.Gid,
			ModTime:  hdr.ModTime,
			Format:   tar.FormatPAX,
		}
		if err := lw.writeHeader(wh, full); err != nil {
			return err
		}
	}
	return lw.walkDir(rel)
}

// writeFile writes a regular file, or a hard link to the first path of
// its inode written.
func (lw *layerWriter) writeFile(rel string, hdr *tar.Header, st *unix.Stat_t, full string) error {
	if st.Nlink > 1 {
		key := inodeKey{dev: st.Dev, ino: st.Ino}
		if first, ok := lw.links[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return lw.writeHeader(hdr, full)
		}
		lw.links[key] = rel
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = st.Size
	if err := lw.writeHeader(hdr, full); err != nil {
		return err
	}
	return lw.copyFile(full, st.Size)
}

func (lw *layerWriter) writeHeader(hdr *tar.Header, full string) error {
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing tar header for %s: %w", full, err)
	}
	if lw.onHeader != nil {
		lw.onHeader(hdr)
	}
	lw.files++
	return nil
}

func (lw *layerWriter) copyFile(full string, size int64) error {
	// Lstat said regular file; O_NONBLOCK so that, were it swapped for a
	// FIFO since, the open would not wait (the read then falls short).
	f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", full, err)
	}
	defer f.Close()
	// A RUN can leave a file of any size: stop on cancellation mid-copy.
	n, err := io.CopyBuffer(lw.tw, io.LimitReader(ctxio.Reader(lw.ctx, f), size), lw.buf)
	lw.bytes += n
	if err != nil {
		return fmt.Errorf("copying %s into the layer tar: %w", full, err)
	}
	if n != size {
		return fmt.Errorf("copying %s into the layer tar: file shrank from %d to %d bytes while reading", full, size, n)
	}
	return nil
}

// isOverlayXattr reports whether name belongs to overlayfs itself
// (trusted.overlay.*, user.overlay.*): never part of image content.
func isOverlayXattr(name string) bool {
	_, rest, ok := strings.Cut(name, ".")
	return ok && strings.HasPrefix(rest, "overlay.")
}

// FileXattrs returns the extended attributes of the file at full (not
// following a symlink) that go into a layer: all but overlayfs's own.
func FileXattrs(full string) (map[string]string, error) {
	x, _, _, err := readXattrs(full, false)
	return x, err
}

// readXattrs returns the file's extended attributes minus overlay's own,
// whether a directory is marked opaque, and the names of overlay's own.
func readXattrs(full string, isDir bool) (map[string]string, bool, []string, error) {
	names, err := listXattrs(full)
	if err != nil {
		return nil, false, nil, err
	}
	var out map[string]string
	var ovl []string
	opaque := false
	for _, name := range names {
		val, err := getXattr(full, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listing
		}
		if err != nil {
			return nil, false, nil, err
		}
		if isOverlayXattr(name) {
			ovl = append(ovl, name)
			if isDir && strings.HasSuffix(name, ".overlay.opaque") && string(val) == "y" {
				opaque = true
			}
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val)
	}
	return out, opaque, ovl, nil
}

func listXattrs(full string) ([]string, error) {
	size := 256
	for {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(full, buf)
		if errors.Is(err, unix.ERANGE) {
			size *= 4
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs of %s: %w", full, err)
		}
		var names []string
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}

func getXattr(full, name string) ([]byte, error) {
	size := 256
	for {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(full, name, buf)
		if errors.Is(err, unix.ERANGE) {
			size *= 4
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, full, err)
		}
		return buf[:n], nil
	}
}
