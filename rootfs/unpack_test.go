package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// hostileCase is one archive and its documented outcome. out is the absolute
// path of a sentinel directory next to (outside) the unpack dir, holding a
// file "secret"; archives aim at it.
type hostileCase struct {
	name    string
	ents    func(out string) []ent
	wantErr string // substring of the error; "" means success
	check   func(t *testing.T, dir, out string)
}

func hostileCases() []hostileCase {
	isFile := func(rel, body string) func(*testing.T, string, string) {
		return func(t *testing.T, dir, _ string) {
			fi, err := os.Lstat(filepath.Join(dir, rel))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("%s: want a regular file, got %v, %v", rel, fi, err)
			}
			if got := readFile(t, filepath.Join(dir, rel)); got != body {
				t.Errorf("%s = %q, want %q", rel, got, body)
			}
		}
	}
	isDir := func(rel string, perm os.FileMode) func(*testing.T, string, string) {
		return func(t *testing.T, dir, _ string) {
			fi, err := os.Lstat(filepath.Join(dir, rel))
			if err != nil || !fi.IsDir() {
				t.Fatalf("%s: want a directory, got %v, %v", rel, fi, err)
			}
			if fi.Mode().Perm() != perm {
				t.Errorf("%s mode %v, want %v", rel, fi.Mode().Perm(), perm)
			}
		}
	}
	return []hostileCase{
		{name: "dotdot", ents: func(string) []ent { return []ent{fileE("../x", "pwned")} },
			wantErr: `entry "../x": path "../x" climbs out of the root`},
		{name: "dotdot inner", ents: func(string) []ent { return []ent{dirE("a/"), fileE("a/../../x", "pwned")} },
			wantErr: `entry "a/../../x": path "a/../../x" climbs out`},
		{name: "dotdot harmless is cleaned", ents: func(string) []ent { return []ent{fileE("a/../b", "ok")} },
			check: isFile("b", "ok")},
		{name: "absolute path is confined", ents: func(string) []ent { return []ent{fileE("/abs", "a"), fileE("/deep/er/f", "d")} },
			check: func(t *testing.T, dir, out string) {
				isFile("abs", "a")(t, dir, out)
				isFile("deep/er/f", "d")(t, dir, out)
				isDir("deep/er", 0o755)(t, dir, out)
			}},
		{name: "absolute symlink to /etc then write through it", ents: func(string) []ent {
			return []ent{dirE("etc/"), symE("evil", "/etc"), fileE("evil/passwd", "pwned")}
		}, check: func(t *testing.T, dir, out string) {
			isFile("etc/passwd", "pwned")(t, dir, out)
			if l, err := os.Readlink(filepath.Join(dir, "evil")); err != nil || l != "/etc" {
				t.Errorf("evil -> %q, %v", l, err)
			}
		}},
		{name: "absolute symlink to sentinel then write through it", ents: func(out string) []ent {
			return []ent{symE("evil", out), fileE("evil/pwned", "pwned")}
		}, wantErr: `entry "evil/pwned": parent directory: mkdir evil: "evil" exists but does not resolve to a directory inside the root`},
		{name: "relative symlink climbing to sentinel then write through it", ents: func(string) []ent {
			return []ent{symE("evil", "../outside"), fileE("evil/pwned", "pwned")}
		}, wantErr: `entry "evil/pwned": parent directory`},
		{name: "relative symlink climbing is clamped at the root", ents: func(string) []ent {
			return []ent{dirE("outside/"), dirE("a/"), symE("a/evil", "../../../outside"), fileE("a/evil/pwned", "x"),
				symE("up", "../.."), fileE("up/outside/pwned2", "y")}
		}, check: func(t *testing.T, dir, out string) {
			isFile("outside/pwned", "x")(t, dir, out)
			isFile("outside/pwned2", "y")(t, dir, out)
		}},
		{name: "hardlink climbing out", ents: func(string) []ent { return []ent{linkE("h", "../outside/secret")} },
			wantErr: `entry "h": hardlink target: path "../outside/secret" climbs out`},
		{name: "hardlink to absolute sentinel path", ents: func(out string) []ent { return []ent{linkE("h", out+"/secret")} },
			wantErr: `entry "h": hardlink target`},
		{name: "hardlink through symlink to sentinel", ents: func(out string) []ent {
			return []ent{symE("lnk", out), symE("rel", "../outside"), linkE("h", "rel/secret")}
		}, wantErr: `entry "h": hardlink target "rel/secret"`},
		{name: "hardlink through symlink stays inside", ents: func(string) []ent {
			return []ent{dirE("outside/"), fileE("outside/secret", "inner"), symE("lnk", "../outside"), linkE("h", "lnk/secret")}
		}, check: func(t *testing.T, dir, out string) {
			isFile("h", "inner")(t, dir, out)
			if a, b := lstat(t, filepath.Join(dir, "h")), lstat(t, filepath.Join(dir, "outside/secret")); a.Ino != b.Ino {
				t.Errorf("h is not a hardlink of outside/secret")
			}
		}},
		{name: "hardlink to a symlink links the symlink", ents: func(out string) []ent {
			return []ent{symE("s", out+"/secret"), linkE("h", "s")}
		}, check: func(t *testing.T, dir, out string) {
			if l, err := os.Readlink(filepath.Join(dir, "h")); err != nil || l != out+"/secret" {
				t.Errorf("h -> %q, %v; want the symlink itself", l, err)
			}
		}},
		{name: "file replaces symlink to outside", ents: func(out string) []ent {
			return []ent{symE("s", out+"/secret"), fileE("s", "new")}
		}, check: isFile("s", "new")},
		{name: "dir replaces symlink to outside dir", ents: func(out string) []ent {
			d := dirE("d/")
			d.mode = 0o700
			return []ent{symE("d", out), d}
		}, check: isDir("d", 0o700)},
		{name: "dir replaces file", ents: func(string) []ent { return []ent{fileE("x", "f"), dirE("x/"), fileE("x/y", "in")} },
			check: isFile("x/y", "in")},
		{name: "file replaces dir with contents", ents: func(string) []ent {
			return []ent{dirE("d/"), dirE("d/e/"), fileE("d/e/f", "f"), fileE("d", "file")}
		}, check: isFile("d", "file")},
		{name: "dir over dir keeps contents", ents: func(string) []ent {
			d := dirE("d/")
			d.mode = 0o711
			return []ent{dirE("d/"), fileE("d/f", "kept"), d}
		}, check: func(t *testing.T, dir, out string) {
			isFile("d/f", "kept")(t, dir, out)
			isDir("d", 0o711)(t, dir, out)
		}},
		{name: "root entry updates the root", ents: func(string) []ent {
			d := dirE("./")
			d.mode = 0o750
			return []ent{d, fileE("./f", "x")}
		}, check: isDir(".", 0o750)},
		{name: "root entry must be a directory", ents: func(string) []ent { return []ent{fileE(".", "x")} },
			wantErr: `entry ".": only a directory may name the root`},
		{name: "whiteout", ents: func(string) []ent { return []ent{fileE(".wh.foo", "")} },
			wantErr: `entry ".wh.foo": whiteout entries are not allowed`},
		{name: "opaque whiteout", ents: func(string) []ent { return []ent{dirE("a/"), fileE("a/.wh..wh..opq", "")} },
			wantErr: `entry "a/.wh..wh..opq": whiteout entries are not allowed`},
		{name: "unsupported type", ents: func(string) []ent { return []ent{{typ: tar.TypeCont, name: "c"}} },
			wantErr: `entry "c": unsupported tar entry type`},
	}
}

func TestUnpackHostile(t *testing.T) {
	etcPasswd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fallback := range []bool{false, true} {
		for _, tc := range hostileCases() {
			name := tc.name
			if fallback {
				name = "securejoin fallback/" + name
			}
			t.Run(name, func(t *testing.T) {
				disableOpenat2 = fallback
				defer func() { disableOpenat2 = false }()
				base := t.TempDir()
				out := filepath.Join(base, "outside")
				dir := filepath.Join(base, "root")
				for _, d := range []string{out, dir} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.WriteFile(filepath.Join(out, "secret"), []byte("secret"), 0o600); err != nil {
					t.Fatal(err)
				}
				before := snapshot(t, base, dir)

				_, err := Unpack(context.Background(), bytes.NewReader(mktar(t, tc.ents(out)...)), dir)

				if tc.wantErr == "" && err != nil {
					t.Fatalf("Unpack: %v", err)
				}
				if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Fatalf("Unpack error = %v, want one containing %q", err, tc.wantErr)
				}
				outsideUnchanged(t, before, snapshot(t, base, dir))
				if tc.check != nil {
					tc.check(t, dir, out)
				}
				if now, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(now, etcPasswd) {
					t.Fatalf("/etc/passwd changed!")
				}
			})
		}
	}
}

func TestUnpackMetadata(t *testing.T) {
	dir := t.TempDir()
	suid := fileE("bin/su", "#!")
	suid.mode = 0o4755
	owned := fileE("home/u/f", "u")
	owned.mode, owned.uid, owned.gid = 0o640, 1000, 1000
	sgid := dirE("srv/")
	sgid.mode, sgid.gid = 0o2775, 1000
	sticky := dirE("tmp/")
	sticky.mode = 0o1777
	lnk := symE("home/u/l", "f")
	lnk.uid, lnk.gid = 1000, 1001
	fifo := ent{typ: tar.TypeFifo, name: "run/p", mode: 0o620}
	null := ent{typ: tar.TypeChar, name: "dev/null", mode: 0o666, major: 1, minor: 3}
	ents := []ent{dirE("bin/"), suid, dirE("home/"), dirE("home/u/"), owned, lnk, sgid, sticky, dirE("run/"), fifo, dirE("dev/"), null}
	st, err := Unpack(context.Background(), bytes.NewReader(mktar(t, ents...)), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rel      string
		mode     uint32 // full st_mode
		uid, gid uint32
	}{
		{"bin/su", unix.S_IFREG | 0o4755, 0, 0},
		{"home/u/f", unix.S_IFREG | 0o640, 1000, 1000},
		{"home/u/l", unix.S_IFLNK | 0o777, 1000, 1001},
		{"srv", unix.S_IFDIR | 0o2775, 0, 1000},
		{"tmp", unix.S_IFDIR | 0o1777, 0, 0},
		{"run/p", unix.S_IFIFO | 0o620, 0, 0},
	} {
		s := lstat(t, filepath.Join(dir, tc.rel))
		if s.Mode != tc.mode || s.Uid != tc.uid || s.Gid != tc.gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", tc.rel, s.Mode, s.Uid, s.Gid, tc.mode, tc.uid, tc.gid)
		}
		if got := (s.Mtim.Sec); got != testTime.Unix() {
			t.Errorf("%s: mtime %d, want %d", tc.rel, got, testTime.Unix())
		}
	}
	for _, rel := range []string{".", "bin", "home", "home/u", "dev", "run"} {
		if s := lstat(t, filepath.Join(dir, rel)); rel != "." && s.Mtim.Sec != testTime.Unix() {
			t.Errorf("dir %s: mtime %d, want %d (dir times are set last)", rel, s.Mtim.Sec, testTime.Unix())
		}
	}
	// mknod of a character device is refused in a user namespace.
	fi, err := os.Lstat(filepath.Join(dir, "dev/null"))
	if inInitUserNS(t) {
		if err != nil || st.SkippedDevices != 0 {
			t.Fatalf("as real root dev/null must be created: %v, skipped %d", err, st.SkippedDevices)
		}
		s := fi.Sys().(*syscall.Stat_t)
		if s.Mode != unix.S_IFCHR|0o666 || unix.Major(s.Rdev) != 1 || unix.Minor(s.Rdev) != 3 {
			t.Errorf("dev/null: mode %o rdev %d:%d", s.Mode, unix.Major(s.Rdev), unix.Minor(s.Rdev))
		}
	} else if !os.IsNotExist(err) || st.SkippedDevices != 1 {
		t.Fatalf("in a user namespace dev/null must be skipped and counted: %v, skipped %d", err, st.SkippedDevices)
	}
	wantEntries := len(ents) - st.SkippedDevices
	if st.Entries != wantEntries || st.Bytes != int64(len("#!")+len("u")) {
		t.Errorf("stats %+v, want %d entries, 3 bytes", st, wantEntries)
	}
}

// capNetRaw is a VFS_CAP_REVISION_2 security.capability value granting
// cap_net_raw=ep.
func capNetRaw() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_RAW)
	return b
}

func TestUnpackXattrs(t *testing.T) {
	dir := t.TempDir()
	f := fileE("ping", "elf")
	f.mode, f.uid = 0o755, 1000 // chown after would drop the capability
	f.pax = map[string]string{
		"SCHILY.xattr.security.capability": string(capNetRaw()),
		"SCHILY.xattr.user.note":           "hello",
		"SCHILY.xattr.trusted.overlay.x":   "y",
	}
	st, err := Unpack(context.Background(), bytes.NewReader(mktar(t, f)), dir)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ping")
	get := func(name string) ([]byte, error) {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(p, name, buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	if v, err := get("security.capability"); err != nil || !bytes.Equal(v, capNetRaw()) {
		t.Errorf("security.capability = %x, %v; want %x", v, err, capNetRaw())
	}
	if v, err := get("user.note"); err != nil || string(v) != "hello" {
		t.Errorf("user.note = %q, %v", v, err)
	}
	v, err := get("trusted.overlay.x")
	if inInitUserNS(t) {
		if err != nil || string(v) != "y" || st.SkippedXattrs != 0 {
			t.Errorf("as real root trusted.* must be set: %q, %v, skipped %d", v, err, st.SkippedXattrs)
		}
	} else if err == nil || st.SkippedXattrs != 1 {
		t.Errorf("in a user namespace trusted.* must be skipped and counted: %q, %v, skipped %d", v, err, st.SkippedXattrs)
	}
	if s := lstat(t, p); s.Mode != unix.S_IFREG|0o755 || s.Uid != 1000 {
		t.Errorf("ping: mode %o uid %d", s.Mode, s.Uid)
	}
}

func TestUnpackCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Unpack(ctx, bytes.NewReader(mktar(t, fileE("a", "b"))), t.TempDir())
	if err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestUnpackCompressed: the five formats docker takes give the same tree.
// testdata/rootfs.tar.bz2 was made with GNU tar and bzip2(1) (Go has no
// bzip2 writer); the other formats are its tar, recompressed.
func TestUnpackCompressed(t *testing.T) {
	bz, err := os.ReadFile("testdata/rootfs.tar.bz2")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(bz)))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	var xzb bytes.Buffer
	xw, err := xz.NewWriter(&xzb)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(plain)
	xw.Close()
	zst, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	formats := map[string][]byte{"plain": plain, "gzip": gz.Bytes(), "bzip2": bz, "xz": xzb.Bytes(), "zstd": zst.EncodeAll(plain, nil)}
	for name, data := range formats {
		dir := t.TempDir()
		st, err := Unpack(context.Background(), bytes.NewReader(data), dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := compareWithTar(t, dir, plain); n != 4 || st.Entries != n {
			t.Errorf("%s: %d entries unpacked, %d in the tar; want 4", name, st.Entries, n)
		}
		if got := readFile(t, filepath.Join(dir, "etc/hello")); got != "hello\n" {
			t.Errorf("%s: etc/hello %q", name, got)
		}
	}
}

func TestUnpackCorruptCompression(t *testing.T) {
	for _, magic := range [][]byte{{0x1f, 0x8b, 0x08}, []byte("BZh9"), {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}} {
		data := append(magic, bytes.Repeat([]byte{0x55}, 600)...)
		dir := t.TempDir()
		_, err := Unpack(context.Background(), bytes.NewReader(data), dir)
		if err == nil || !knownUnpackError(err.Error()) {
			t.Errorf("% x…: err = %v, want one naming the archive", magic, err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("% x…: wrote %v", magic, left)
		}
	}
}

func TestUnpackAlpine(t *testing.T) {
	tgz, err := os.ReadFile(testenv.AlpineTarball(t))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"gzip", tgz}, {"plain", plain}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			start := time.Now()
			st, err := Unpack(context.Background(), bytes.NewReader(tc.data), dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d entries, %d bytes in %v", tc.name, st.Entries, st.Bytes, time.Since(start))
			n := compareWithTar(t, dir, plain)
			if st.Entries != n || st.SkippedDevices != 0 || st.SkippedXattrs != 0 {
				t.Errorf("stats %+v, want %d entries", st, n)
			}
			busybox := lstat(t, filepath.Join(dir, "bin/busybox"))
			if busybox.Mode&unix.S_IFMT != unix.S_IFREG || busybox.Mode&0o111 != 0o111 {
				t.Errorf("bin/busybox mode %o, want an executable file", busybox.Mode)
			}
			if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "/bin/busybox" {
				t.Errorf("bin/sh -> %q, %v", l, err)
			}
			// Facts checked against `tar tvzf`: shadow is 0640 root:shadow(42), tmp is 1777.
			if s := lstat(t, filepath.Join(dir, "etc/shadow")); s.Mode != unix.S_IFREG|0o640 || s.Gid != 42 {
				t.Errorf("etc/shadow mode %o gid %d, want 0640 gid 42", s.Mode, s.Gid)
			}
			if s := lstat(t, filepath.Join(dir, "tmp")); s.Mode != unix.S_IFDIR|0o1777 {
				t.Errorf("tmp mode %o, want sticky 1777", s.Mode)
			}
			osr, err := OSRelease(dir)
			if err != nil {
				t.Fatal(err)
			}
			if osr["ID"] != "alpine" || osr["VERSION_ID"] != "3.20.3" || osr["PRETTY_NAME"] != "Alpine Linux v3.20" {
				t.Errorf("os-release %v", osr)
			}
			got := strings.Join(ImportNames(osr), " ")
			if got != "alpine:3.20.3 alpine:3.20 alpine:latest" {
				t.Errorf("ImportNames = %s", got)
			}
		})
	}
}

// compareWithTar checks every entry of the plain tar against what is on disk
// (type, permission bits, owner, mtime, size, symlink target) and returns the
// number of entries.
func compareWithTar(t *testing.T, dir string, plain []byte) int {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(plain))
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		p := filepath.Join(dir, h.Name)
		s := lstat(t, p)
		wantType := map[byte]uint32{tar.TypeReg: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR, tar.TypeSymlink: unix.S_IFLNK}[h.Typeflag]
		if wantType == 0 {
			t.Fatalf("%s: unexpected type %q in the alpine tarball", h.Name, h.Typeflag)
		}
		if s.Mode&unix.S_IFMT != wantType {
			t.Errorf("%s: type %o, want %o", h.Name, s.Mode&unix.S_IFMT, wantType)
		}
		if h.Typeflag != tar.TypeSymlink && s.Mode&0o7777 != uint32(h.Mode)&0o7777 {
			t.Errorf("%s: mode %o, want %o", h.Name, s.Mode&0o7777, h.Mode&0o7777)
		}
		if int(s.Uid) != h.Uid || int(s.Gid) != h.Gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", h.Name, s.Uid, s.Gid, h.Uid, h.Gid)
		}
		if s.Mtim.Sec != h.ModTime.Unix() || s.Mtim.Nsec != int64(h.ModTime.Nanosecond()) {
			t.Errorf("%s: mtime %d.%09d, want %v", h.Name, s.Mtim.Sec, s.Mtim.Nsec, h.ModTime)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if s.Size != h.Size {
				t.Errorf("%s: size %d, want %d", h.Name, s.Size, h.Size)
			}
		case tar.TypeSymlink:
			if l, _ := os.Readlink(p); l != h.Linkname {
				t.Errorf("%s -> %q, want %q", h.Name, l, h.Linkname)
			}
		}
	}
}
