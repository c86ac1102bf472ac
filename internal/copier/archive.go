package copier

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/compression"
	"github.com/stepexec/stepexec/internal/fsat"
)

// detectArchive tells whether ADD extracts a file, as BuildKit's
// isArchivePath: its compression is recognized by magic number (or it has
// none) and the decompressed stream starts with a valid tar header. A
// compressed file that is not a tar, or a broken one, is copied as is. It
// reads with pread, leaving the file's offset alone.
func detectArchive(fd int, size int64) (kind compression.Kind, ok bool, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(preader(fd), 0, size), 64<<10)
	head, err := br.Peek(compression.HeadSize)
	if err != nil && err != io.EOF {
		return 0, false, fmt.Errorf("read: %w", err)
	}
	kind = compression.Detect(head)
	r, err := compression.NewSerialReader(br, kind)
	if err != nil {
		return 0, false, nil
	}
	defer r.Close()
	if _, err := tar.NewReader(r).Next(); err != nil {
		return 0, false, nil
	}
	return kind, true, nil
}

// extractor unpacks a tar into a directory as BuildKit's ADD does
// (go-archive's chrootarchive.Untar: the destination is the archive's root).
// Names are resolved inside that directory as in a chroot: absolute names,
// ".." and symlinks planted by earlier entries cannot lead outside it.
// Whiteouts are ordinary files here: they mean something only in layers.
type extractor struct {
	ctx    context.Context
	root   *root
	chown  *Owner
	res    *Result
	dirs   []dirTime
	parent struct { // the last parent directory, reused while entries stay in it
		rel string
		fd  int
	}
}

type dirTime struct {
	rel          string
	atime, mtime time.Time
}

// run extracts the first size bytes of the archive fd and returns their sha256.
func (x *extractor) run(fd int, size int64, kind compression.Kind) ([]byte, error) {
	x.parent.fd = -1
	defer x.dropParent()
	h := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(preader(fd), 0, size), h), 1<<20)
	dr, err := compression.NewReader(br, kind)
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			dr.Close()
		}
	}()
	tr := tar.NewReader(dr)
	for {
		if err := x.ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	for _, d := range x.dirs {
		if err := x.dirTimes(d); err != nil {
			return nil, fmt.Errorf("entry %q: %w", d.rel, err)
		}
	}
	// The rest (padding, trailing data) is part of the digest. zstd and
	// pgzip read ahead in goroutines: stop them before reading on.
	closed = true
	if err := dr.Close(); err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	return h.Sum(nil), nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	rel := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	if rel == "" {
		return nil // the destination itself, which exists (go-archive skips ".")
	}
	dir, base := path.Dir(rel), path.Base(rel)
	pfd, err := x.parentDir(dir)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	var lfd = -1
	var lname string
	if hdr.Typeflag == tar.TypeLink {
		// Resolved before anything is replaced; the last component is not followed.
		l, err := x.root.resolve(hdr.Linkname, false, nil)
		if err != nil || l.st == nil || l.name == "" {
			if l != nil {
				l.close()
			}
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, errors.Join(err, os.ErrNotExist))
		}
		defer l.close()
		lfd, lname = l.parent, l.name
	}
	// A directory or symlink entry, or a removed directory, may change what
	// the cached parent's path names: drop it once this entry is done.
	if hdr.Typeflag == tar.TypeDir || hdr.Typeflag == tar.TypeSymlink {
		defer x.dropParent()
	}
	var cur unix.Stat_t
	if err := unix.Fstatat(pfd, base, &cur, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if !(cur.Mode&unix.S_IFMT == unix.S_IFDIR && hdr.Typeflag == tar.TypeDir) {
			if cur.Mode&unix.S_IFMT == unix.S_IFDIR {
				defer x.dropParent()
			}
			if err := fsat.RemoveAll(pfd, base); err != nil {
				return fmt.Errorf("replace existing: %w", err)
			}
		}
	} else if err != unix.ENOENT {
		return err
	}
	skipped, err := x.create(hdr, r, pfd, base, lfd, lname)
	if err != nil || skipped {
		return err
	}
	if err := x.meta(hdr, pfd, base); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		x.dirs = append(x.dirs, dirTime{rel, hdr.AccessTime, hdr.ModTime})
	}
	x.res.Files++
	return nil
}

// create makes the entry's file, directory, link or node.
func (x *extractor) create(hdr *tar.Header, r io.Reader, pfd int, base string, lfd int, lname string) (skipped bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
			return false, fmt.Errorf("mkdir: %w", err)
		}
	case tar.TypeReg, tar.TypeGNUSparse:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return false, fmt.Errorf("create: %w", err)
		}
		f := os.NewFile(uintptr(fd), base)
		n, err := io.Copy(f, r)
		x.res.Bytes += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return false, fmt.Errorf("symlink: %w", err)
		}
	case tar.TypeLink:
		if err := unix.Linkat(lfd, lname, pfd, base, 0); err != nil {
			return false, fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
	default:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknodat(pfd, base, mode|0o600, dev); err != nil {
			if err == unix.EPERM && hdr.Typeflag != tar.TypeFifo {
				x.res.SkippedDevices++
				return true, nil
			}
			return false, fmt.Errorf("mknod: %w", err)
		}
	}
	return false, nil
}

// meta applies owner, xattrs, mode and (except for directories, done at
// the end) times, in go-archive's order. Owners are the archive's unless
// --chown is given; --chmod does not apply to extracted entries.
func (x *extractor) meta(hdr *tar.Header, pfd int, base string) error {
	uid, gid := hdr.Uid, hdr.Gid
	if x.chown != nil {
		uid, gid = x.chown.UID, x.chown.GID
	}
	if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return chownError(base, uid, gid, err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Lsetxattr(procPath(pfd, base), name, []byte(v), 0); err != nil && err != unix.EPERM && !unsupportedXattr(err) {
			return fmt.Errorf("lsetxattr %s: %w", name, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %o: %w", hdr.Mode&0o7777, err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return setTarTimes(pfd, base, hdr.AccessTime, hdr.ModTime)
}

// parentDir returns the directory an entry goes in, creating missing
// ("implied") ones with mode 0755 as go-archive does.
func (x *extractor) parentDir(rel string) (int, error) {
	if rel == "." {
		rel = ""
	}
	if x.parent.fd >= 0 && x.parent.rel == rel {
		return x.parent.fd, nil
	}
	x.dropParent()
	fd, l, err := x.root.mkdirAll(rel, 0o755, nil)
	if err != nil {
		return -1, err
	}
	l.close()
	x.parent.rel, x.parent.fd = rel, fd
	return fd, nil
}

func (x *extractor) dropParent() {
	if x.parent.fd >= 0 {
		unix.Close(x.parent.fd)
		x.parent.fd = -1
	}
}

func (x *extractor) dirTimes(d dirTime) error {
	l, err := x.root.resolve(d.rel, false, nil)
	if err != nil {
		return nil // replaced by a later entry, which set its own times
	}
	defer l.close()
	if !l.isDir() {
		return nil
	}
	return setTarTimes(l.parent, l.name, d.atime, d.mtime)
}

var (
	unixEpoch   = time.Unix(0, 0)
	unixMaxTime = time.Unix(0, 1<<63-1)
)

// setTarTimes sets times as go-archive: atime is the later of atime and
// mtime, and times outside what the syscall takes become the epoch.
func setTarTimes(dirfd int, name string, atime, mtime time.Time) error {
	bound := func(t time.Time) time.Time {
		if t.Before(unixEpoch) || t.After(unixMaxTime) {
			return unixEpoch
		}
		return t
	}
	if atime.Before(mtime) {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(bound(atime).UnixNano()), unix.NsecToTimespec(bound(mtime).UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
