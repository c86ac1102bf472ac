package copier

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/dockerfile"
)

// fooTarBz2 is tarOf(foo f content0) owned 0:0, made with bzip2(1): the
// standard library has no bzip2 writer.
//
//go:embed testdata/foo.tar.bz2
var fooTarBz2 []byte

// tent is one tar entry: "name kind [mode] [data|link]" as node specs, kinds
// f d l h p c (char device 1:3); owned by the test owner unless uid/gid.
type tent struct {
	spec     string
	uid, gid int
	pax      map[string]string
	mtime    time.Time
}

func tarOf(t testing.TB, ents ...tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		n := parseNode(t, e.spec)
		h := &tar.Header{Name: n.path, Mode: int64(n.or(0o644)), Uid: os.Geteuid(), Gid: os.Getegid(),
			ModTime: e.mtime, PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.uid != 0 || e.gid != 0 {
			h.Uid, h.Gid = e.uid, e.gid
		}
		switch n.kind {
		case "f":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(n.data))
		case "d":
			h.Typeflag, h.Mode = tar.TypeDir, int64(n.or(0o755))
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, n.data
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, n.data
		case "p":
			h.Typeflag = tar.TypeFifo
		case "c":
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if n.kind == "f" {
			tw.Write([]byte(n.data))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressed(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch kind {
	case "tar":
		return data
	case "gz":
		w := gzip.NewWriter(&buf)
		w.Write(data)
		w.Close()
	case "xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "zst":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	default:
		t.Fatalf("no %s writer", kind)
	}
	return buf.Bytes()
}

// addCase runs ADD of local files: files is name -> content in the source
// dir (written 0644), image the destination tree before.
type addCase struct {
	name     string
	files    map[string][]byte
	image    []string
	opts     Options // Unpack is set unless noUnpack
	noUnpack bool
	want     []string
	wantErr  string
	check    func(t *testing.T, dest string, res Result)
}

func runAddCases(t *testing.T, cases []addCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, dest := t.TempDir(), t.TempDir()
			t.Cleanup(func() { makeRemovable(dest) })
			for name, data := range tc.files {
				if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			mkTree(t, dest, tc.image...)
			opts := tc.opts
			opts.Unpack = !tc.noUnpack
			chown, owner := testOwner()
			if opts.Chown == nil {
				opts.Chown = chown
			}
			res, err := Copy(context.Background(), Source{Root: src}, dest, opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil {
				if d := diffLines(listTree(t, dest), expandOwner(tc.want, owner)); d != "" {
					t.Fatal(d)
				}
			}
			if tc.check != nil {
				tc.check(t, dest, res)
			}
			sum, err := Checksum(context.Background(), Source{Root: src}, opts)
			if err != nil || sum != res.Digest {
				t.Fatalf("Checksum = %s, %v; Copy's digest %s", sum, err, res.Digest)
			}
		})
	}
}

// BuildKit's testDockerfileAddArchive and friends: local archives are
// recognized by content, plain or compressed, and extracted.
func TestAddArchives(t *testing.T) {
	foo := tarOf(t, tent{spec: "foo f content0"})
	extracted := []string{"foo f 0644 O content0"}
	var cases []addCase
	for _, kind := range []string{"tar", "gz", "xz", "zst"} {
		cases = append(cases, addCase{name: kind, files: map[string][]byte{"t." + kind: compressed(t, kind, foo)},
			opts: Options{Sources: []string{"t." + kind}, Dest: "/"}, want: extracted})
	}
	notTar := compressed(t, "gz", []byte("just text, not a tar"))
	cases = append(cases, []addCase{
		{name: "bz2", files: map[string][]byte{"t.tar.bz2": fooTarBz2}, opts: Options{Sources: []string{"t.tar.bz2"}, Dest: "/"}, want: extracted},
		{name: "gzip of a non-tar is copied", files: map[string][]byte{"t.gz": notTar},
			opts:  Options{Sources: []string{"t.gz"}, Dest: "/"},
			check: func(t *testing.T, dest string, _ Result) { sameFile(t, filepath.Join(dest, "t.gz"), notTar) }},
		{name: "a text file is copied", files: map[string][]byte{"t.tar": []byte("hello")},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/x"}, want: []string{"x f 0644 O hello"}},
		{name: "an empty file is copied", files: map[string][]byte{"e": nil},
			opts: Options{Sources: []string{"e"}, Dest: "/"}, want: []string{"e f 0644 O"}},
		{name: "COPY does not extract", files: map[string][]byte{"t.tar.gz": compressed(t, "gz", foo)}, noUnpack: true,
			opts: Options{Sources: []string{"t.tar.gz"}, Dest: "/"},
			check: func(t *testing.T, dest string, _ Result) {
				sameFile(t, filepath.Join(dest, "t.tar.gz"), compressed(t, "gz", foo))
			}},
		{name: "wildcard into a dest without slash", files: map[string][]byte{"t.tar": foo, "b.tar": tarOf(t, tent{spec: "bar f content1"})},
			opts: Options{Sources: []string{"*.tar"}, Dest: "/dest"},
			want: []string{"dest d 0755 O", "dest/bar f 0644 O content1", "dest/foo f 0644 O content0"}},
		{name: "implied parent directories are 0755", files: map[string][]byte{"t.tar": tarOf(t, tent{spec: "etc/dnf/ d 0750"}, tent{spec: "etc/dnf/dnf.conf f 0600 c"})},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/"},
			want: []string{"etc d 0755 O", "etc/dnf d 0750 O", "etc/dnf/dnf.conf f 0600 O c"}},
		{name: "--chmod does not apply to entries", files: map[string][]byte{"t.tar": foo},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/d/", Chmod: mustChmod(t, "0600")},
			want: []string{"d d 0755 O", "d/foo f 0644 O content0"}},
		{name: "entry types and modes", files: map[string][]byte{"t.tar": tarOf(t,
			tent{spec: "d d 0700"}, tent{spec: "d/s f 04755 x"}, tent{spec: "d/l l s"}, tent{spec: "d/h h 04755 d/s"},
			tent{spec: "d/p p 0640"}, tent{spec: ".wh.gone f w"}, tent{spec: "./ d 0777"})},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/"},
			want: []string{".wh.gone f 0644 O w", "d d 0700 O", "d/h f 4755 O x", "d/l l O ->s", "d/p p 0640 O", "d/s f 4755 O x"}},
		{name: "existing entries are replaced, directories merged", files: map[string][]byte{"t.tar": tarOf(t,
			tent{spec: "file f new"}, tent{spec: "dir d 0700"}, tent{spec: "dir/n f n"}, tent{spec: "wasdir f w"}, tent{spec: "link f 0600 plain"})},
			image: []string{"file f old", "dir/keep f k", "wasdir/x f x", "link l target", "target f 0600 t"},
			opts:  Options{Sources: []string{"t.tar"}, Dest: "/"},
			want: []string{"dir d 0700 O", "dir/keep f 0644 O k", "dir/n f 0644 O n", "file f 0644 O new",
				"link f 0600 O plain", "target f 0600 O t", "wasdir f 0644 O w"}},
		{name: "through an absolute symlink in the image", files: map[string][]byte{"payload.tar": tarOf(t,
			tent{spec: "var/run/act/ d"}, tent{spec: "var/run/act/HEAD f ref"}, tent{spec: "var/run/act/HEAD.link h var/run/act/HEAD"})},
			image: []string{"run d", "var/run l /run"},
			opts:  Options{Sources: []string{"payload.tar"}, Dest: "/"},
			want:  []string{"run d 0755 O", "run/act d 0755 O", "run/act/HEAD f 0644 O ref", "run/act/HEAD.link f 0644 O ref", "var d 0755 O", "var/run l O ->/run"},
			check: func(t *testing.T, dest string, _ Result) {
				if !sameInode(t, filepath.Join(dest, "run/act/HEAD"), filepath.Join(dest, "run/act/HEAD.link")) {
					t.Fatal("HEAD.link is not a hardlink of HEAD")
				}
			}},
		{name: "mtimes and xattrs are kept", files: map[string][]byte{"t.tar": tarOf(t,
			tent{spec: "d d", mtime: time.Unix(1e9, 0)}, tent{spec: "d/f f x", mtime: time.Unix(1e9, 0), pax: map[string]string{"SCHILY.xattr.user.k": "v"}})},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/"},
			check: func(t *testing.T, dest string, _ Result) {
				for _, p := range []string{"d", "d/f"} {
					if got := mtime(t, filepath.Join(dest, p)); !got.Equal(time.Unix(1e9, 0)) {
						t.Errorf("%s mtime %v", p, got)
					}
				}
				buf := make([]byte, 8)
				if n, err := unix.Lgetxattr(filepath.Join(dest, "d/f"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
					t.Errorf("user.k = %q, %v", buf[:n], err)
				}
			}},
		{name: "device nodes are created, or skipped when refused", files: map[string][]byte{"t.tar": tarOf(t, tent{spec: "null c 0666"})},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/"},
			check: func(t *testing.T, dest string, res Result) {
				var st unix.Stat_t
				err := unix.Lstat(filepath.Join(dest, "null"), &st)
				if os.Geteuid() == 0 && (err != nil || st.Rdev != unix.Mkdev(1, 3) || res.SkippedDevices != 0) {
					t.Fatalf("as root: null %v rdev %x skipped %d", err, st.Rdev, res.SkippedDevices)
				}
				if os.Geteuid() != 0 && (err == nil || res.SkippedDevices != 1) {
					t.Fatalf("unprivileged: null exists (%v), skipped %d", err, res.SkippedDevices)
				}
			}},
		{name: "a broken archive after a valid header is an error", files: map[string][]byte{"t.tar": tarOf(t, tent{spec: "big f " + strings.Repeat("x", 2000)})[:1200]},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/"}, wantErr: `source "t.tar": extract t.tar into /`},
	}...)
	runAddCases(t, cases)
}

// BuildKit's testDockerfileAddChownArchive: --chown owns the entries and the
// destination directory; without it the archive's owners are kept.
func TestAddArchiveOwners(t *testing.T) {
	needRoot(t)
	runAddCases(t, []addCase{
		{name: "chown", files: map[string][]byte{"t.tar": tarOf(t, tent{spec: "foo f content0", uid: 7, gid: 8})},
			opts: Options{Sources: []string{"t.tar"}, Dest: "/out/", Chown: &Owner{100, 200}},
			want: []string{"out d 0755 100:200", "out/foo f 0644 100:200 content0"}},
	})
	src, dest := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "t.tar"), tarOf(t, tent{spec: "d/foo f content0", uid: 7, gid: 8}, tent{spec: "d/l l foo", uid: 9, gid: 10}), 0o644)
	if _, err := Copy(context.Background(), Source{Root: src}, dest, Options{Sources: []string{"t.tar"}, Dest: "/", Unpack: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{"d d 0755 0:0", "d/foo f 0644 7:8 content0", "d/l l 9:10 ->foo"}
	if d := diffLines(listTree(t, dest), want); d != "" {
		t.Fatal(d)
	}
}

func mustChmod(t testing.TB, s string) *dockerfile.Chmod {
	c, err := dockerfile.ParseChmod(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sameFile(t testing.TB, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, %v; want the %d bytes of the source", p, len(got), err, len(want))
	}
}

func sameInode(t testing.TB, a, b string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Lstat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
