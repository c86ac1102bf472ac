package snapshottest

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/stepexec/stepexec/snapshot"
)

// BaseTree is the base layer most tests stand on; every time in it is
// FixedTime, so it always makes the same layer.
var BaseTree = []Change{
	Write("etc/motd", "welcome\n"),
	Write("etc/hosts", "127.0.0.1 localhost\n"),
	Write("etc/apk/world", "busybox\n"),
	Write("etc/apk/arch", "x86_64\n"),
	Write("bin/tool", "#!/bin/sh\necho tool\n"),
	Write("usr/share/doc/id", "base\n"),
	Chtimes("etc/apk"), Chtimes("etc"), Chtimes("bin"),
	Chtimes("usr/share/doc"), Chtimes("usr/share"), Chtimes("usr"),
}

// commitCase is one step's changes on BaseTree and the layer they make.
type commitCase struct {
	name   string
	change []Change
	want   []string // the layer's entries, in order
	check  func(x *tester, e map[string]entry)
}

// owner is who Chown gives files: uid/gid 1000 as root, else the
// process's own ids (a normal user can give no other).
func owner() (int, int) {
	if os.Geteuid() == 0 {
		return 1000, 1000
	}
	return os.Geteuid(), os.Getegid()
}

// xattr is an extended attribute this process may set: a file
// capability (cap_net_raw=ep, as setcap writes it) as root, else user.*.
func xattr() (name, value string) {
	if os.Geteuid() != 0 {
		return "user.note", "n"
	}
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // revision 2 | effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)          // permitted: CAP_NET_RAW
	return "security.capability", string(b)
}

func commitCases() []commitCase {
	uid, gid := owner()
	xname, xvalue := xattr()
	return []commitCase{
		{name: "new file", change: []Change{Write("new.txt", "hello")}, want: []string{"new.txt"},
			check: func(x *tester, e map[string]entry) {
				h := e["new.txt"].hdr
				if h.Typeflag != tar.TypeReg || string(e["new.txt"].content) != "hello" || h.Mode != 0o644 || h.ModTime.Unix() != FixedTime.Unix() {
					x.t.Errorf("new.txt: type %c mode %o mtime %v content %q", h.Typeflag, h.Mode, h.ModTime, e["new.txt"].content)
				}
			}},
		{name: "delete file", change: []Change{Remove("etc/motd")}, want: []string{"etc/", "etc/.wh.motd"}},
		{name: "delete dir", change: []Change{RemoveAll("etc/apk")}, want: []string{"etc/", "etc/.wh.apk"}},
		{name: "replace dir", change: []Change{RemoveAll("etc/apk"), Mkdir("etc/apk", 0o700), Write("etc/apk/world", "musl\n")},
			want: []string{"etc/", "etc/apk/", "etc/apk/.wh..wh..opq", "etc/apk/world"}},
		{name: "replace file by dir", change: []Change{Remove("etc/motd"), Mkdir("etc/motd", 0o755), Write("etc/motd/x", "x")},
			want: []string{"etc/", "etc/motd/", "etc/motd/.wh..wh..opq", "etc/motd/x"}},
		{name: "replace dir by file", change: []Change{RemoveAll("etc/apk"), Write("etc/apk", "flat\n")},
			want: []string{"etc/", "etc/apk"}},
		{name: "rename file", change: []Change{Rename("etc/motd", "etc/motd2")}, want: []string{"etc/", "etc/.wh.motd", "etc/motd2"}},
		// A directory whose mode or xattrs changed is in the layer, even when
		// nothing in it is (a temp file made and removed).
		{name: "chmod dir and temp file", change: []Change{Write("etc/apk/tmp", "x"), Remove("etc/apk/tmp"), Chmod("etc/apk", 0o700)},
			want: []string{"etc/", "etc/apk/"}},
		{name: "xattr on dir and temp file", change: []Change{Write("etc/apk/tmp", "x"), Remove("etc/apk/tmp"), Setxattr("etc/apk", xname, xvalue)},
			want: []string{"etc/", "etc/apk/"}},
		{name: "chmod", change: []Change{Chmod("etc/hosts", 0o600)}, want: []string{"etc/", "etc/hosts"},
			check: func(x *tester, e map[string]entry) {
				if h := e["etc/hosts"]; h.hdr.Mode != 0o600 || string(h.content) != "127.0.0.1 localhost\n" {
					x.t.Errorf("etc/hosts: mode %o content %q", h.hdr.Mode, h.content)
				}
			}},
		{name: "chown", change: []Change{Chown("etc/hosts", uid, gid)}, want: []string{"etc/", "etc/hosts"},
			check: func(x *tester, e map[string]entry) {
				if h := e["etc/hosts"].hdr; h.Uid != uid || h.Gid != gid {
					x.t.Errorf("etc/hosts owned by %d:%d, want %d:%d", h.Uid, h.Gid, uid, gid)
				}
			}},
		{name: "hardlinks", change: []Change{Mkdir("data", 0o755), Write("data/f", "shared"), Link("data/f", "data/g"), Link("bin/tool", "bin/tool2")},
			want: []string{"bin/", "bin/tool", "bin/tool2", "data/", "data/f", "data/g"},
			check: func(x *tester, e map[string]entry) {
				for name, target := range map[string]string{"data/g": "data/f", "bin/tool2": "bin/tool"} {
					if h := e[name].hdr; h.Typeflag != tar.TypeLink || h.Linkname != target {
						x.t.Errorf("%s: type %c link %q, want a hard link to %s", name, h.Typeflag, h.Linkname, target)
					}
				}
			}},
		{name: "xattr", change: []Change{Write("bin/ping", "ping"), Setxattr("bin/ping", xname, xvalue)}, want: []string{"bin/", "bin/ping"},
			check: func(x *tester, e map[string]entry) {
				if got := e["bin/ping"].hdr.PAXRecords["SCHILY.xattr."+xname]; got != xvalue {
					x.t.Errorf("%s = %q, want %q", xname, got, xvalue)
				}
			}},
		{name: "deep change", change: []Change{Write("usr/share/doc/id", "changed\n")},
			want: []string{"usr/", "usr/share/", "usr/share/doc/", "usr/share/doc/id"}},
		{name: "new tree", change: []Change{Mkdir("srv", 0o755), Mkdir("srv/a", 0o750), Write("srv/a/f", "f"), Symlink("../etc/motd", "srv/motd")},
			want: []string{"srv/", "srv/a/", "srv/a/f", "srv/motd"}},
	}
}

// testCommitCases commits each case on one base layer and checks the
// layer's entries and a view of it.
func testCommitCases(x *tester) {
	base := x.layer("", BaseTree...)
	if base.Layer.ID != base.Layer.DiffID.Encoded() {
		x.t.Errorf("base layer ID %s, want its DiffID's hex", base.Layer.ID)
	}
	for _, tc := range commitCases() {
		x.t.Run(tc.name, func(t *testing.T) {
			sub := &tester{t: t, s: x.s, ctx: x.ctx, n: x.n}
			c := sub.layer(base.Layer.ID, tc.change...)
			if c.Empty {
				t.Fatal("Commit: Empty")
			}
			names, entries := sub.checkLayer(c, base.Layer.ID)
			if !slices.Equal(names, tc.want) {
				t.Errorf("layer entries %q, want %q", names, tc.want)
			}
			checkFormat(sub, names, entries)
			if tc.check != nil {
				tc.check(sub, entries)
			}
			sub.checkView(c.Layer.ID, oracle(t, BaseTree, tc.change))
		})
	}
}

// checkFormat checks what every layer must hold: no overlay xattrs, and
// whiteouts as empty 0600 files of 0:0 with their directory's mtime.
func checkFormat(x *tester, names []string, entries map[string]entry) {
	x.t.Helper()
	for _, name := range names {
		h := entries[name].hdr
		for k := range h.PAXRecords {
			if strings.Contains(k, ".overlay.") {
				x.t.Errorf("%s carries overlay xattr %s", name, k)
			}
		}
		dir, base := path.Split(name)
		if !strings.HasPrefix(base, ".wh.") || base == ".wh..wh..opq" {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Size != 0 || h.Mode != 0o600 || h.Uid != 0 || h.Gid != 0 {
			x.t.Errorf("whiteout %s: type %c size %d mode %o owner %d:%d", name, h.Typeflag, h.Size, h.Mode, h.Uid, h.Gid)
		}
		if d, ok := entries[dir]; ok && !d.hdr.ModTime.Equal(h.ModTime) {
			x.t.Errorf("whiteout %s: mtime %v, its directory's %v", name, h.ModTime, d.hdr.ModTime)
		}
	}
}

// testChain checks that a view of each layer of a chain shows the
// changes of the chain up to it, and nothing of the layers above.
func testChain(x *tester) {
	steps := [][]Change{
		{Write("one", "1"), Write("gone", "x"), Write("dir/a", "a"), Write("dir/b", "b")},
		{Write("two", "2"), Write("one", "1 again"), Chmod("dir/a", 0o600)},
		{Write("three", "3"), Remove("gone"), Remove("dir/b"), Write("dir/c", "c")},
	}
	for i := range 6 {
		steps = append(steps, []Change{Write(fmt.Sprintf("more/f%d", i), "f"), Write("counter", fmt.Sprint(i))})
	}
	var ids []string
	parent := ""
	for i, st := range steps {
		c := x.layer(parent, st...)
		if i == 2 {
			names, _ := x.checkLayer(c, parent)
			if want := []string{"dir/", "dir/.wh.b", "dir/c", ".wh.gone", "three"}; !slices.Equal(names, want) {
				x.t.Errorf("third layer %q, want %q", names, want)
			}
		}
		ids, parent = append(ids, c.Layer.ID), c.Layer.ID
	}
	for i, id := range ids {
		x.checkView(id, oracle(x.t, steps[:i+1]...))
	}
}

// testEmptyAndDedup: no changes make no layer; equal changes on the
// same parent make one layer, found again.
func testEmptyAndDedup(x *tester) {
	base := x.layer("", BaseTree...)
	for name, changes := range map[string][]Change{
		"unchanged":        nil,
		"temp file at top": {Write("tmp", "x"), Remove("tmp")},
		// Only the directory's times changed: it stays out, as in
		// BuildKit's layers (a RUN's mountpoint stub in /etc does this).
		"temp file in a lower dir": {Write("etc/tmp", "x"), Remove("etc/tmp")},
		"read only":                {func(root string) error { _, err := os.ReadFile(root + "/etc/motd"); return err }},
	} {
		if c := x.layer(base.Layer.ID, changes...); !c.Empty || c.Layer != (snapshot.Layer{}) || c.Files != 0 || c.Reused {
			x.t.Errorf("%s: Commit = %+v, want Empty", name, c)
		}
	}
	first := x.layer(base.Layer.ID, Write("same", "same"))
	second := x.layer(base.Layer.ID, Write("same", "same"))
	if first.Reused || !second.Reused || first.Layer != second.Layer {
		x.t.Errorf("equal changes: %+v then %+v; want one layer, Reused the second time", first, second)
	}
	if again := x.layer("", BaseTree...); !again.Reused || again.Layer != base.Layer {
		x.t.Errorf("base layer again: %+v, want %+v Reused", again, base.Layer)
	}
}
