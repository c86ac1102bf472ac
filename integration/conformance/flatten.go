// Package conformance proves stepexec's images against docker build's: it
// flattens an image's layers into the filesystem a container would see,
// takes the difference from a base image, and compares that and the image
// config with a golden expectation made by BuildKit. The corpus it runs
// lives in integration/testdata/conformance; scripts/conformance.sh drives
// the reference builders and integration/conformance_test.go stepexec.
package conformance

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Entry is one path of a flattened filesystem, with what is compared about
// it. Timestamps are left out: no two builds agree on them.
type Entry struct {
	Type   string `json:"type"` // file, dir, symlink, char, block, fifo
	Mode   string `json:"mode"` // permission and setuid/setgid/sticky bits, octal: "0755"
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size,omitempty"`   // files only
	SHA256 string `json:"sha256,omitempty"` // files only
	// Text is the content of a small text file, so that goldens can be
	// reviewed and differences read without unpacking the image.
	Text   string            `json:"text,omitempty"`
	Link   string            `json:"link,omitempty"`   // symlink target
	Device string            `json:"device,omitempty"` // "major:minor" of char and block devices
	Xattrs map[string]string `json:"xattrs,omitempty"` // value as hex
	// Hardlink names the first path (in sorted order) of the files sharing
	// this one's inode, when that is another path.
	Hardlink string `json:"hardlink,omitempty"`
}

// FS is a flattened filesystem: absolute clean path → entry. The root
// directory itself is not listed.
type FS map[string]Entry

// inode lets hardlinked paths share one identity while flattening.
type inode struct{ entry Entry }

type tree map[string]*inode

// Flatten applies the image's layers in order, as a container runtime
// would: whiteouts remove paths, opaque markers empty directories,
// hardlinks share their target's inode.
func Flatten(img v1.Image) (FS, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	t := tree{}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		err = t.apply(tar.NewReader(rc))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return t.fs(), nil
}

// apply adds one layer. Within a layer, whiteouts apply to the layers
// below only, so they are collected and applied before the layer's own
// entries, as the OCI image spec describes.
func (t tree) apply(tr *tar.Reader) error {
	type pending struct {
		hdr  *tar.Header
		node *inode
	}
	var adds []pending
	var whiteouts, opaques []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		p := cleanPath(hdr.Name)
		if p == "/" {
			continue
		}
		dir, base := path.Split(p)
		switch {
		case base == ".wh..wh..opq":
			opaques = append(opaques, path.Clean(dir))
			continue
		case strings.HasPrefix(base, ".wh."):
			whiteouts = append(whiteouts, path.Join(dir, strings.TrimPrefix(base, ".wh.")))
			continue
		}
		n, err := node(hdr, tr)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		adds = append(adds, pending{hdr, n})
	}
	for _, d := range opaques {
		t.removeChildren(d)
	}
	for _, p := range whiteouts {
		t.remove(p)
	}
	for _, a := range adds {
		p := cleanPath(a.hdr.Name)
		if a.hdr.Typeflag == tar.TypeLink {
			target, ok := t[cleanPath(a.hdr.Linkname)]
			if !ok {
				return fmt.Errorf("%s: hardlink to missing %s", a.hdr.Name, a.hdr.Linkname)
			}
			t.removeChildren(p)
			t[p] = target
			continue
		}
		if a.node.entry.Type != "dir" {
			t.removeChildren(p)
		}
		t[p] = a.node
	}
	return nil
}

// node reads one non-hardlink tar entry.
func node(hdr *tar.Header, r io.Reader) (*inode, error) {
	e := Entry{Mode: fmt.Sprintf("%04o", hdr.Mode&0o7777), UID: hdr.Uid, GID: hdr.Gid}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		e.Type = "file"
		h := sha256.New()
		head := &prefix{max: maxText + 1}
		n, err := io.Copy(io.MultiWriter(h, head), r)
		if err != nil {
			return nil, err
		}
		e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
		if n <= maxText && utf8.Valid(head.b) && !bytes.ContainsRune(head.b, 0) {
			e.Text = string(head.b)
		}
	case tar.TypeDir:
		e.Type = "dir"
	case tar.TypeSymlink:
		e.Type, e.Link = "symlink", hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		e.Type = map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block"}[hdr.Typeflag]
		e.Device = fmt.Sprintf("%d:%d", hdr.Devmajor, hdr.Devminor)
	case tar.TypeFifo:
		e.Type = "fifo"
	case tar.TypeLink:
		// resolved against the tree by apply
	default:
		return nil, fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[name] = hex.EncodeToString([]byte(v))
		}
	}
	return &inode{entry: e}, nil
}

func (t tree) remove(p string) {
	delete(t, p)
	t.removeChildren(p)
}

func (t tree) removeChildren(dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p := range t {
		if strings.HasPrefix(p, prefix) {
			delete(t, p)
		}
	}
}

// fs turns the tree into entries, naming each hardlink group after its
// first path so that the result does not depend on the order of the tar.
func (t tree) fs() FS {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	first := map[*inode]string{}
	out := FS{}
	for _, p := range paths {
		n := t[p]
		e := n.entry
		if f, ok := first[n]; ok {
			e.Hardlink = f
		} else {
			first[n] = p
		}
		out[p] = e
	}
	return out
}

// maxText is the largest file whose content Entry.Text shows.
const maxText = 256

// prefix keeps the first max bytes written to it.
type prefix struct {
	b   []byte
	max int
}

func (p *prefix) Write(b []byte) (int, error) {
	if room := p.max - len(p.b); room > 0 {
		p.b = append(p.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

// cleanPath makes a tar name absolute and clean: "./a/b/" → "/a/b".
func cleanPath(name string) string {
	return path.Clean("/" + name)
}
