package conformance

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ent is a tar entry of a test layer.
type ent struct {
	name     string
	typ      byte
	body     string
	mode     int64
	uid, gid int
	link     string
	pax      map[string]string
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}
func hardlink(name, to string) ent   { return ent{name: name, typ: tar.TypeLink, link: to} }
func whiteout(dir, name string) ent  { return file(dir+".wh."+name, "") }
func opaque(dir string) ent          { return file(dir+".wh..wh..opq", "") }
func withMode(e ent, mode int64) ent { e.mode = mode; return e }

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func layer(t *testing.T, entries ...ent) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Size: int64(len(e.body)), PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil && e.typ == tar.TypeReg {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func image(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func flatten(t *testing.T, layers ...v1.Layer) FS {
	t.Helper()
	fs, err := Flatten(image(t, layers...))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestFlattenAppliesLayersInOrder(t *testing.T) {
	base := layer(t, dir("etc/"), file("etc/motd", "hi\n"), file("etc/keep", "k"),
		dir("opq/"), dir("opq/sub/"), file("opq/sub/f", "f"), file("opq/g", "g"),
		dir("d2f/"), file("d2f/child", "c"), file("target", "shared"))
	top := layer(t,
		// A whiteout in a layer hides only what is below, even when the
		// layer then adds the path again.
		whiteout("etc/", "motd"), file("etc/motd", "new\n"),
		whiteout("etc/", "keep"),
		opaque("opq/"), file("opq/new", "n"),
		file("d2f", "now a file"),
		hardlink("linked", "target"),
		symlink("sl", "../etc/motd"),
		withMode(file("suid", "s"), 0o4755),
		ent{name: "owned", typ: tar.TypeReg, body: "o", mode: 0o600, uid: 1000, gid: 1001,
			pax: map[string]string{"SCHILY.xattr.user.note": "v"}},
	)
	fs := flatten(t, base, top)
	for _, gone := range []string{"/etc/keep", "/opq/sub", "/opq/sub/f", "/opq/g", "/d2f/child"} {
		if _, ok := fs[gone]; ok {
			t.Errorf("%s survived its removal", gone)
		}
	}
	checks := map[string]Entry{
		"/etc/motd": {Type: "file", Mode: "0644", Size: 4, Text: "new\n"},
		"/opq/new":  {Type: "file", Mode: "0644", Size: 1, Text: "n"},
		"/opq":      {Type: "dir", Mode: "0755"},
		"/d2f":      {Type: "file", Mode: "0644", Size: 10, Text: "now a file"},
		"/linked":   {Type: "file", Mode: "0644", Size: 6, Text: "shared"},
		"/sl":       {Type: "symlink", Mode: "0777", Link: "../etc/motd"},
		"/suid":     {Type: "file", Mode: "4755", Size: 1, Text: "s"},
		"/owned":    {Type: "file", Mode: "0600", UID: 1000, GID: 1001, Size: 1, Text: "o", Xattrs: map[string]string{"user.note": "76"}},
	}
	for p, want := range checks {
		got, ok := fs[p]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		got.SHA256 = ""
		if d := entryDiff(&want, &got); d != "" {
			t.Errorf("%s: %s", p, d)
		}
	}
	// The hardlink group is named after its first path, whatever the tar's order.
	if fs["/linked"].Hardlink != "" || fs["/target"].Hardlink != "/linked" {
		t.Errorf("hardlink group: /linked %q, /target %q", fs["/linked"].Hardlink, fs["/target"].Hardlink)
	}
	if fs["/etc/motd"].SHA256 != sha("new\n") {
		t.Errorf("sha256 of /etc/motd = %s", fs["/etc/motd"].SHA256)
	}
}

func TestFlattenRejectsHardlinkToNothing(t *testing.T) {
	if _, err := Flatten(image(t, layer(t, hardlink("a", "missing")))); err == nil {
		t.Fatal("a hardlink to a missing path flattened without error")
	}
}

func TestFlattenLongFileHasNoText(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), maxText+1))
	fs := flatten(t, layer(t, file("long", long), file("short", "ok"), file("bin", "a\x00b")))
	if fs["/long"].Text != "" || fs["/bin"].Text != "" || fs["/short"].Text != "ok" {
		t.Errorf("text: long %q, bin %q, short %q", fs["/long"].Text, fs["/bin"].Text, fs["/short"].Text)
	}
	if fs["/long"].Size != int64(maxText+1) {
		t.Errorf("size of /long = %d", fs["/long"].Size)
	}
}
