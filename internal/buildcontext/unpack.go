package buildcontext

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/fsat"
)

// unpack extracts a tar stream into dir, which is empty, following the
// rules of docker's untar (moby/go-archive, used by BuildKit to unpack an
// archive context) where they confine the archive, and stricter where a
// build context needs nothing more:
//   - an absolute name is confined ("/etc/x" is written at dir/etc/x); a
//     name that climbs out ("../x", "a/../../x") is an error;
//   - parents are resolved inside dir as if chrooted there, so a symlink
//     planted by an earlier entry cannot lead a write out of it;
//   - a symlink whose relative target climbs out of dir is an error
//     (go-archive's "invalid symlink"); an absolute target is kept, it
//     means a path inside the root;
//   - a hardlink's target is resolved inside dir and must exist;
//   - an entry replaces what is at its path, never writing through it,
//     except that a directory over a directory keeps it;
//   - device nodes and FIFOs are refused (a context never needs one, and a
//     FIFO would stall whoever opens it);
//   - owners and xattrs are ignored: the files belong to the current user.
//     Modes (with setuid/setgid/sticky) and mtimes are kept; directories
//     get theirs last, deepest first, so a read-only directory does not
//     stop its own entries. The "." entry is skipped, as BuildKit does.
func unpack(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{ctx: ctx, root: root}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	return u.finishDirs()
}

type unpacker struct {
	ctx  context.Context
	root *os.File
	dirs []dirMeta
}

// dirMeta is a directory entry's mode and times, applied at the end.
type dirMeta struct {
	name, rel    string
	mode         uint32
	atime, mtime time.Time
}

// cleanRel turns an entry name into a path relative to the root, "." for
// the root itself. A leading "/" is dropped (the name is confined); a name
// that climbs out is refused, as go-archive refuses it.
func cleanRel(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("path %q climbs out of the build context", name)
	}
	return p, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return errors.New("device nodes and FIFOs cannot be part of a build context")
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeSymlink && escapes(rel, hdr.Linkname) {
		return fmt.Errorf("symlink to %q points outside the build context", hdr.Linkname)
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("only a directory may name the context's root")
		}
		return nil
	}
	parent, err := u.mkdirAll(path.Dir(rel))
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer parent.Close()
	pfd, base := int(parent.Fd()), path.Base(rel)

	var link *os.File // a hardlink target's directory, resolved before anything is removed
	var linkBase string
	if hdr.Typeflag == tar.TypeLink {
		if link, linkBase, err = u.linkTarget(hdr.Linkname, rel); err != nil {
			return err
		}
		defer link.Close()
	}
	if err := u.clear(pfd, base, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && err != unix.EEXIST {
			return fmt.Errorf("mkdir: %w", err)
		}
		u.dirs = append(u.dirs, dirMeta{hdr.Name, rel, uint32(hdr.Mode) & 0o7777, hdr.AccessTime, hdr.ModTime})
		return nil
	case tar.TypeReg, tar.TypeGNUSparse: // the reader fills a sparse file's holes
		if err := u.writeFile(pfd, base, hdr, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
	case tar.TypeLink:
		// Flags 0: a symlink target is linked itself, never followed.
		if err := unix.Linkat(int(link.Fd()), linkBase, pfd, base, 0); err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
		return nil // the inode's metadata is the target's
	}
	return fsat.SetTimes(pfd, base, hdr.AccessTime, hdr.ModTime)
}
