package snapshot

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fnode is one file of a fuzzed upper directory, as the test means it.
type fnode struct {
	name     string // on-disk name
	kind     byte   // 'd' dir, 'f' file, 'l' symlink, 'w' whiteout, 'p' fifo
	opaque   bool   // a directory marked user.overlay.opaque=y
	target   string // a symlink's
	attrs    *fattrs
	children []*fnode
}

// fattrs are an inode's: hardlinked names share them.
type fattrs struct {
	content  []byte
	mode     uint32
	uid, gid int
	mtime    time.Time
	xattr    string // user.fuzz, "" for none
	first    string // tar path of the first name written (hardlinks)
	names    int
}

type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) next() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzBytes) take(n int) []byte {
	n = min(n, len(f.b))
	p := f.b[:n]
	f.b = f.b[n:]
	return p
}

// name decodes a file name: any bytes but '/' and NUL, never "." or "..",
// and never ".wh.*", which the layer format reserves.
func (f *fuzzBytes) name() string {
	n := int(f.next()%12) + 1
	if n == 12 {
		n = 200
	}
	b := []byte(strings.Repeat("n", n))
	copy(b, f.take(n))
	for i, c := range b {
		if c == '/' || c == 0 {
			b[i] = '_'
		}
	}
	s := string(b)
	if s == "." || s == ".." || strings.HasPrefix(s, ".wh.") {
		s = "_" + s
	}
	return s
}

// decodeTree turns fuzz input into a tree of directories, files,
// hardlinks, symlinks, whiteouts, opaque directories and FIFOs.
func decodeTree(data []byte) *fnode {
	in := &fuzzBytes{b: data}
	// The upper dir's own mtime is fixed too: whiteouts at the top take it.
	root := &fnode{kind: 'd', attrs: &fattrs{mtime: time.Unix(1_000_000_000, 0)}}
	dirs := []*fnode{root}
	var files []*fnode
	for n := int(in.next() % 24); n > 0; n-- {
		kind := in.next() % 7
		parent := dirs[int(in.next())%len(dirs)]
		c := &fnode{name: in.name()}
		if slices.ContainsFunc(parent.children, func(o *fnode) bool { return o.name == c.name }) {
			continue
		}
		attrs := &fattrs{mode: uint32(in.next())<<4 | uint32(in.next()), uid: int(in.next()), gid: int(in.next()),
			mtime: time.Unix(int64(in.next())<<24|int64(in.next()), int64(in.next())*1e6)}
		if x := in.next(); x%3 == 0 {
			attrs.xattr = string(in.take(int(x%40) + 1))
		}
		switch kind {
		case 0, 1:
			c.kind, c.opaque = 'd', kind == 1
			dirs = append(dirs, c)
		case 2:
			c.kind = 'f'
			attrs.content = in.take(int(in.next()) * int(in.next()%4+1))
			files = append(files, c)
		case 3:
			if len(files) == 0 {
				continue
			}
			c.kind = 'f'
			attrs = files[int(in.next())%len(files)].attrs // a hardlink
		case 4:
			c.kind, c.target = 'l', string(in.take(int(in.next()%16)))
			if c.target == "" || strings.IndexByte(c.target, 0) >= 0 {
				c.target = "../x" // symlink(2) takes neither
			}
			attrs.mode, attrs.xattr = 0o777, ""
		case 5:
			c.kind, attrs.mode, attrs.xattr = 'w', 0, ""
		case 6:
			c.kind, attrs.xattr = 'p', ""
		}
		attrs.names++
		c.attrs = attrs
		parent.children = append(parent.children, c)
	}
	return root
}

// create lays the tree out under dir; the caller sets attributes after.
func create(t *testing.T, dir string, n *fnode, firsts map[*fattrs]string) {
	for _, c := range n.children {
		p := filepath.Join(dir, c.name)
		var err error
		switch c.kind {
		case 'd':
			err = os.Mkdir(p, 0o700)
		case 'f':
			if first, ok := firsts[c.attrs]; ok {
				err = os.Link(first, p)
			} else {
				firsts[c.attrs] = p
				err = os.WriteFile(p, c.attrs.content, 0o600)
			}
		case 'l':
			err = os.Symlink(c.target, p)
		case 'w':
			err = unix.Mknod(p, unix.S_IFCHR, 0) // overlay's whiteout
		case 'p':
			err = unix.Mkfifo(p, 0o600)
		}
		if err != nil {
			t.Fatalf("creating %s: %v", p, err)
		}
		if c.kind == 'd' {
			create(t, p, c, firsts)
			if c.opaque {
				if err := unix.Lsetxattr(p, "user.overlay.opaque", []byte("y"), 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// setAttrs gives every file its owner, mode, xattr and times, once the
// whole tree exists (creating a child would change a directory's mtime).
func setAttrs(t *testing.T, dir string, n *fnode) {
	for _, c := range n.children {
		p := filepath.Join(dir, c.name)
		a := c.attrs
		if err := os.Lchown(p, a.uid, a.gid); err != nil {
			t.Fatal(err)
		}
		if c.kind != 'l' {
			if err := unix.Chmod(p, a.mode&0o7777); err != nil {
				t.Fatal(err)
			}
		}
		if a.xattr != "" {
			if err := unix.Lsetxattr(p, "user.fuzz", []byte(a.xattr), 0); err != nil {
				t.Fatal(err)
			}
		}
		if c.kind == 'd' {
			setAttrs(t, p, c)
		}
		ts := []unix.Timespec{unix.NsecToTimespec(a.mtime.UnixNano()), unix.NsecToTimespec(a.mtime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

// expected lists the layer entries the tree must become, in the differ's
// documented order and form.
func expected(n *fnode, prefix string) []string {
	var out []string
	children := slices.Clone(n.children)
	slices.SortFunc(children, func(a, b *fnode) int { return strings.Compare(a.name, b.name) })
	for _, c := range children {
		a := c.attrs
		p := prefix + c.name
		line := func(typ byte, name string, mode uint32, extra string) string {
			return fmt.Sprintf("%c %q mode=%o %d:%d mtime=%d%s", typ, name, mode, a.uid, a.gid, a.mtime.Unix(), extra)
		}
		x := ""
		if a.xattr != "" {
			x = fmt.Sprintf(" user.fuzz=%q", a.xattr)
		}
		switch c.kind {
		case 'd':
			out = append(out, line(tar.TypeDir, p+"/", a.mode&0o7777, x))
			if c.opaque {
				out = append(out, line(tar.TypeReg, p+"/"+whiteoutOpaque, a.mode&0o777, " size=0"))
			}
			out = append(out, expected(c, p+"/")...)
		case 'f':
			if a.names > 1 && a.first != "" {
				out = append(out, line(tar.TypeLink, p, a.mode&0o7777, " link="+fmt.Sprintf("%q", a.first)+x))
				continue
			}
			a.first = p
			out = append(out, line(tar.TypeReg, p, a.mode&0o7777, fmt.Sprintf(" size=%d content=%x%s", len(a.content), a.content, x)))
		case 'l':
			out = append(out, line(tar.TypeSymlink, p, 0o777, fmt.Sprintf(" link=%q", c.target)))
		case 'w':
			// A whiteout's header is its directory's: owner 0:0, the
			// directory's mtime (the tree alone decides it).
			out = append(out, fmt.Sprintf("%c %q mode=%o 0:0 mtime=%d size=0", tar.TypeReg, prefix+whiteoutPrefix+c.name, 0o600, n.attrs.mtime.Unix()))
		case 'p':
			out = append(out, line(tar.TypeFifo, p, a.mode&0o7777, ""))
		}
	}
	return out
}

// entries renders a layer tar in the form expected uses.
func entries(t *testing.T, r io.Reader) []string {
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading the layer tar: %v", err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		extra := ""
		switch h.Typeflag {
		case tar.TypeReg:
			extra = fmt.Sprintf(" size=%d", h.Size)
			if len(content) > 0 || !strings.Contains(h.Name, whiteoutPrefix) {
				extra += fmt.Sprintf(" content=%x", content)
			}
		case tar.TypeLink, tar.TypeSymlink:
			extra = fmt.Sprintf(" link=%q", h.Linkname)
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				extra += fmt.Sprintf(" %s=%q", x, v)
			}
		}
		out = append(out, fmt.Sprintf("%c %q mode=%o %d:%d mtime=%d%s", h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), extra))
	}
}

// FuzzWriteLayerTar builds an upper directory from the fuzz input (files,
// directories, symlinks, hardlinks, whiteouts, opaque directories, FIFOs,
// with owners, modes incl. setuid, xattrs and times) and checks that its
// layer tar holds exactly the entries the tree means, in order, and that
// writing it twice gives the same bytes.
func FuzzWriteLayerTar(f *testing.F) {
	// Every input decodes to a tree; random ones hold every kind of file.
	for seed := range int64(8) {
		b := make([]byte, 256)
		rand.New(rand.NewSource(seed)).Read(b)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tree := decodeTree(data)
		upper := t.TempDir()
		create(t, upper, tree, map[*fattrs]string{})
		setAttrs(t, upper, tree)
		rootTime := []unix.Timespec{unix.NsecToTimespec(tree.attrs.mtime.UnixNano()), unix.NsecToTimespec(tree.attrs.mtime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, upper, rootTime, 0); err != nil {
			t.Fatal(err)
		}

		var first, second bytes.Buffer
		files, nbytes, err := WriteLayerTar(&first, upper)
		if err != nil {
			t.Fatalf("WriteLayerTar: %v", err)
		}
		if _, _, err := WriteLayerTar(&second, upper); err != nil {
			t.Fatalf("WriteLayerTar again: %v", err)
		}
		if !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatal("two runs over the same tree gave different tars")
		}
		assertRecordMatchesTarSplit(t, upper)
		got := entries(t, bytes.NewReader(first.Bytes()))
		want := expected(tree, "")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("layer tar\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var content int64
		for _, e := range want {
			if strings.HasPrefix(e, "0 ") {
				var size int64
				fmt.Sscanf(e[strings.Index(e, " size=")+6:], "%d", &size)
				content += size
			}
		}
		if files != len(want) || nbytes != content {
			t.Errorf("WriteLayerTar counted %d entries, %d bytes; the tar has %d, %d", files, nbytes, len(want), content)
		}
	})
}
