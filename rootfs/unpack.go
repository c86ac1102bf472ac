// Package rootfs unpacks base root filesystems (tar archives, plain or
// compressed) safely into a directory, and reads facts about them
// (os-release).
//
// "Inside the root" means: every path is resolved as if the process were
// chrooted into the target directory. Symlinks planted by the archive, with
// absolute or relative targets, are followed only within it.
package rootfs

import (
	"archive/tar"
	"bufio"
	"context"
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

// Stats counts what Unpack did.
type Stats struct {
	Entries        int   // archive entries written (created, replaced or updated), including the root "./"
	Bytes          int64 // bytes of regular file content written
	SkippedDevices int   // character/block device nodes not created because mknod was refused (EPERM: rootless)
	SkippedXattrs  int   // trusted.*/security.* xattrs the kernel refused (EPERM/ENOTSUP: not the initial user namespace)
	SquashedOwners int   // entries made 0:0 because their owner is not mapped (SquashOwners)
}

// Unpack extracts a tar stream, plain or compressed with gzip, bzip2, xz or
// zstd (detected by its magic bytes, as docker detects them), into dir,
// which must exist.
//
// Hostile archives cannot create or modify anything outside dir. Per case:
//   - absolute names ("/etc/passwd") are confined: written at dir/etc/passwd;
//   - names that climb out lexically ("../x", "a/../../x") are rejected with
//     an error naming the entry (docker does the same);
//   - symlinks planted by earlier entries are followed inside dir only, as in a
//     chroot: "evil -> /etc" then "evil/passwd" writes dir/etc/passwd; a parent
//     that resolves to nothing inside dir (dangling symlink) is an error;
//   - hardlink targets are resolved the same way (climbing names rejected,
//     symlinked parents followed inside dir, the final component not followed:
//     a hardlink to a symlink links the symlink itself); a missing target is an
//     error;
//   - the last component of an entry is never followed: an entry replaces
//     whatever is at its path (a symlink is replaced, not written through),
//     except that a directory entry over an existing directory keeps it (and
//     its contents) and only updates its metadata;
//   - whiteouts (".wh.NAME", ".wh..wh..opq") are rejected: they belong to layers,
//     not base root filesystems.
//
// Regular file content keeps its holes: sparse entries (PAX 0.x/1.0 and
// GNU's old 'S' type) and runs of zero blocks are not written but skipped.
// An entry larger than the free space left on dir's filesystem is refused
// before it is created. Cancelling ctx stops Unpack within a block.
//
// Ownership comes from the header (lchown), then the mode including
// setuid/setgid/sticky (chown clears setuid), then xattrs from PAX
// SCHILY.xattr.* records (after chown, which clears security.capability),
// then atime/mtime. Directories' times are set last, deepest-last-first, so
// they end as in the archive. Device nodes refused with EPERM (rootless) are
// skipped and counted, like docker rootless and buildah.
//
// Errors name the offending entry; the caller names the archive.
func Unpack(ctx context.Context, r io.Reader, dir string, opts ...UnpackOption) (Stats, error) {
	var st Stats
	tr, closeFn, err := tarReader(r)
	if err != nil {
		return st, err
	}
	defer closeFn()
	rt, err := openRoot(dir)
	if err != nil {
		return st, err
	}
	defer rt.Close()
	u := &unpacker{ctx: ctx, root: rt, stats: &st}
	for _, o := range opts {
		o(&u.opts)
	}
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return st, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// Deepest and latest first, so setting a directory's times is not undone
	// by touching one of its children afterwards.
	for i := len(u.dirs) - 1; i >= 0; i-- {
		if err := u.dirTimes(u.dirs[i]); err != nil {
			return st, fmt.Errorf("entry %q: set times: %w", u.dirs[i].name, err)
		}
	}
	return st, nil
}

// tarReader detects the archive's compression by its magic bytes and
// returns a tar reader of what it holds, and a func that stops the
// decompressor.
func tarReader(r io.Reader) (*tar.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(compression.HeadSize)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("read archive: %w", err)
	}
	kind := compression.Detect(head)
	zr, err := compression.NewReader(br, kind)
	if err != nil {
		return nil, nil, fmt.Errorf("read %v archive: %w", kind, err)
	}
	return tar.NewReader(zr), func() { zr.Close() }, nil
}

type unpacker struct {
	ctx   context.Context
	root  *root
	buf   []byte // content copy buffer
	stats *Stats
	dirs  []dirTime
	opts  unpackOptions
}

type unpackOptions struct {
	squashOwners bool
}

// UnpackOption changes how Unpack treats an archive.
type UnpackOption func(*unpackOptions)

// SquashOwners makes entries owned by ids the current user namespace does
// not map owned by 0:0 instead of failing, as podman's ignore_chown_errors
// does. It is for --single-uid, where only id 0 exists.
func SquashOwners() UnpackOption { return func(o *unpackOptions) { o.squashOwners = true } }

type dirTime struct {
	name         string // as in the archive, for messages
	rel          string
	atime, mtime time.Time
}

// target names one object for metadata calls: dirfd+name (name never
// followed), or for the root itself AT_FDCWD and the root's path.
type target struct {
	dirfd int
	name  string
}

func (t target) xattrPath() string {
	if t.dirfd == unix.AT_FDCWD {
		return t.name
	}
	// The magic link names a directory fd we hold; the final component is
	// not followed by lsetxattr.
	return fmt.Sprintf("/proc/self/fd/%d/%s", t.dirfd, t.name)
}

func isWhiteout(base string) bool { return strings.HasPrefix(base, ".wh.") }

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // PAX global records carry nothing we apply
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeGNUSparse:
		// GNU's old sparse format: archive/tar has read the map and returns
		// the content with its holes as zeros, like PAX sparse entries.
		hdr.Typeflag = tar.TypeReg
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return err
	}
	base := path.Base(rel)
	if isWhiteout(base) {
		return errors.New("whiteout entries are not allowed in a base root filesystem")
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("only a directory may name the root")
		}
		t := target{dirfd: unix.AT_FDCWD, name: u.root.path}
		if err := u.meta(hdr, t, false); err != nil {
			return err
		}
		u.dirs = append(u.dirs, dirTime{hdr.Name, rel, hdr.AccessTime, hdr.ModTime})
		u.stats.Entries++
		return nil
	}

	pfd, err := u.root.mkdirAll(path.Dir(rel), nil)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer unix.Close(pfd)

	// Resolve a hardlink's target before anything is removed.
	var lfd int = -1
	var lbase string
	if hdr.Typeflag == tar.TypeLink {
		lrel, err := cleanRel(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		if lrel == "." {
			return errors.New("hardlink to the root directory")
		}
		if lrel == rel {
			return errors.New("hardlink to itself")
		}
		lfd, err = u.root.openDir(path.Dir(lrel))
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(lfd)
		lbase = path.Base(lrel)
	}

	var cur unix.Stat_t
	if err := unix.Fstatat(pfd, base, &cur, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		keep := hdr.Typeflag == tar.TypeDir && cur.Mode&unix.S_IFMT == unix.S_IFDIR
		if !keep {
			if err := fsat.RemoveAll(pfd, base); err != nil {
				return fmt.Errorf("replace existing: %w", err)
			}
		}
	} else if err != unix.ENOENT {
		return err
	}

	t := target{dirfd: pfd, name: base}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
			return fmt.Errorf("mkdir: %w", err)
		}
		u.dirs = append(u.dirs, dirTime{hdr.Name, rel, hdr.AccessTime, hdr.ModTime})
	case tar.TypeReg:
		if err := checkSpace(pfd, hdr.Size); err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		f := os.NewFile(uintptr(fd), hdr.Name)
		if u.buf == nil {
			u.buf = make([]byte, 128<<10)
		}
		n, err := writeContent(u.ctx, f, r, hdr.Size, u.buf)
		u.stats.Bytes += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
	case tar.TypeLink:
		// flags 0: a symlink target is linked itself, never followed.
		if err := unix.Linkat(lfd, lbase, pfd, base, 0); err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
		// A hardlink shares the inode: its metadata is the target's.
		u.stats.Entries++
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknodat(pfd, base, mode|0o600, dev); err != nil {
			if err == unix.EPERM && hdr.Typeflag != tar.TypeFifo {
				u.stats.SkippedDevices++
				return nil
			}
			return fmt.Errorf("mknod: %w", err)
		}
	}
	if err := u.meta(hdr, t, hdr.Typeflag == tar.TypeSymlink); err != nil {
		return err
	}
	u.stats.Entries++
	return nil
}

// meta applies owner, mode, xattrs and (except for directories, done last)
// times, in the order that keeps each: chown clears setuid/setgid and
// security.capability, so it goes first.
func (u *unpacker) meta(hdr *tar.Header, t target, symlink bool) error {
	if err := unix.Fchownat(t.dirfd, t.name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		// EINVAL: an id this user namespace does not map.
		if !(u.opts.squashOwners && err == unix.EINVAL) {
			return fmt.Errorf("lchown %d:%d: %w (is the id mapped? a subuid range of 65536 ids covers 0-65535)", hdr.Uid, hdr.Gid, err)
		}
		if err := unix.Fchownat(t.dirfd, t.name, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lchown 0:0: %w", err)
		}
		u.stats.SquashedOwners++
	}
	if !symlink {
		// Not a symlink (just created, or an existing directory), so
		// following the last component is moot; fchmodat has no NOFOLLOW.
		if err := unix.Fchmodat(t.dirfd, t.name, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %o: %w", hdr.Mode&0o7777, err)
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Lsetxattr(t.xattrPath(), name, []byte(v), 0); err != nil {
			privileged := strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
			if privileged && (err == unix.EPERM || err == unix.ENOTSUP) {
				u.stats.SkippedXattrs++
				continue
			}
			return fmt.Errorf("lsetxattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return fsat.SetTimes(t.dirfd, t.name, hdr.AccessTime, hdr.ModTime)
}

func (u *unpacker) dirTimes(d dirTime) error {
	if d.rel == "." {
		return fsat.SetTimes(unix.AT_FDCWD, u.root.path, d.atime, d.mtime)
	}
	// A later entry may have replaced the directory or one of its parents;
	// that entry set its own times.
	pfd, err := u.root.openDir(path.Dir(d.rel))
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	err = unix.Fstatat(pfd, path.Base(d.rel), &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT || err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if err != nil {
		return err
	}
	return fsat.SetTimes(pfd, path.Base(d.rel), d.atime, d.mtime)
}
