package copier

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// --chmod: fsutil's copyFileInfo applies it to every copied file and
// directory; an octal one is also the mode of the directories Copy creates
// (MkdirAll gets ci.Mode). BuildKit's testCopyChmod and testChmodNonOctal.
func TestCopyChmod(t *testing.T) {
	foo := []string{"foo f 0600 foo-contents", "bar f 0700 bar-contents"}
	tree := []string{"p/file f 0666", "p/exe f 0744", "p/dir d 0777", "p/link l file"}
	runCopyCases(t, []copyCase{
		{name: "0644 on a file", src: foo, chmod: "0644", opts: Options{Sources: []string{"foo"}, Dest: "/"},
			want: []string{"foo f 0644 O foo-contents"}},
		{name: "777 to a new name", src: foo, chmod: "777", opts: Options{Sources: []string{"bar"}, Dest: "/baz"},
			want: []string{"baz f 0777 O bar-contents"}},
		{name: "0", src: foo, chmod: "0", root: true, opts: Options{Sources: []string{"foo"}, Dest: "/foobis"},
			want: []string{"foobis f 0000 O foo-contents"}},
		{name: "created parents take the octal mode", src: foo, chmod: "777", opts: Options{Sources: []string{"foo"}, Dest: "/parent/foo"},
			want: []string{"parent d 0777 O", "parent/foo f 0777 O foo-contents"}},
		{name: "existing parents keep theirs", src: foo, chmod: "770", image: []string{"parent d 0777"},
			opts: Options{Sources: []string{"foo"}, Dest: "/parent/sub/foo"},
			want: []string{"parent d 0777 O", "parent/sub d 0770 O", "parent/sub/foo f 0770 O foo-contents"}},
		{name: "octal applies to directories and the created top", src: []string{"d/f f 0600 x", "d/s d 0700"}, chmod: "750",
			opts: Options{Sources: []string{"d"}, Dest: "/x"},
			want: []string{"x d 0750 O", "x/f f 0750 O x", "x/s d 0750 O"}},
		{name: "special bits", src: foo, chmod: "4755", opts: Options{Sources: []string{"foo"}, Dest: "/s"},
			want: []string{"s f 4755 O foo-contents"}},
		{name: "go-w", src: tree, chmod: "go-w", opts: Options{Sources: []string{"p"}, Dest: "/"},
			want: []string{"dir d 0755 O", "exe f 0744 O", "file f 0644 O", "link l O ->file"}},
		{name: "u=rw,g=r,o=r", src: tree, chmod: "u=rw,g=r,o=r", opts: Options{Sources: []string{"p"}, Dest: "/"},
			want: []string{"dir d 0644 O", "exe f 0644 O", "file f 0644 O", "link l O ->file"}},
		{name: "a+X", src: []string{"p/file f 0644", "p/exe f 0744", "p/dir d 0700"}, chmod: "a+X",
			opts: Options{Sources: []string{"p"}, Dest: "/"},
			want: []string{"dir d 0711 O", "exe f 0755 O", "file f 0644 O"}},
		{name: "symbolic leaves created parents 0755", src: foo, chmod: "u+x", opts: Options{Sources: []string{"foo"}, Dest: "/new/foo"},
			want: []string{"new d 0755 O", "new/foo f 0700 O foo-contents"}},
	})
}

// Without --chmod every mode is kept, special bits included, and a
// read-only directory is still filled (its mode is set after its entries).
func TestCopyKeepsModes(t *testing.T) {
	runCopyCases(t, []copyCase{
		{name: "modes", src: []string{"p/suid f 04755", "p/sgid f 02750", "p/sticky d 01777", "p/ro d 0555", "p/ro/f f 0444 r", "p/none f 0000"},
			root: os.Geteuid() != 0, // an unprivileged test cannot read back the 0000 file
			opts: Options{Sources: []string{"p"}, Dest: "/"},
			want: []string{"none f 0000 O", "ro d 0555 O", "ro/f f 0444 O r", "sgid f 2750 O", "sticky d 1777 O", "suid f 4755 O"}},
		{name: "modes readable unprivileged", src: []string{"p/suid f 04755", "p/sgid f 02750", "p/sticky d 01777", "p/ro d 0555", "p/ro/f f 0444 r"},
			opts: Options{Sources: []string{"p"}, Dest: "/"},
			want: []string{"ro d 0555 O", "ro/f f 0444 O r", "sgid f 2750 O", "sticky d 1777 O", "suid f 4755 O"}},
	})
}

// Special files: fsutil's copyDevice makes a FIFO a FIFO, a socket an
// empty regular file (BuildKit's testCopySocket).
func TestCopySpecialFiles(t *testing.T) {
	runCopyCases(t, []copyCase{
		{name: "fifo and socket", src: []string{"d/p p 0640", "d/s s 0750"}, opts: Options{Sources: []string{"d"}, Dest: "/x"},
			want: []string{"x d 0755 O", "x/p p 0640 O", "x/s f 0750 O"}},
		{name: "a fifo named as the source is not opened", src: []string{"p p 0600"}, opts: Options{Sources: []string{"p"}, Dest: "/x"},
			want: []string{"x p 0600 O"}},
	})
}

func TestCopyDeviceNodes(t *testing.T) {
	needRoot(t)
	src, dest := t.TempDir(), t.TempDir()
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "null"), 0o666); err != nil {
		t.Fatal(err)
	}
	res, err := Copy(context.Background(), Source{Root: src}, dest, Options{Sources: []string{"null"}, Dest: "/dev/"})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dest, "dev/null"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Mode&0o7777 != 0o666 || res.SkippedDevices != 0 {
		t.Fatalf("dev/null: mode %o rdev %x, skipped %d", st.Mode, st.Rdev, res.SkippedDevices)
	}
}

// Owners: BuildKit's testCopyChownExistingDir. A stage source keeps its
// owners, the context gives 0:0; --chown owns copied entries and created
// directories; existing directories keep theirs.
func TestCopyOwners(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	mkTree(t, src, "file f", "dir/subdir/nestedfile f", "link l file")
	for p, o := range map[string][2]int{"file": {100, 200}, "dir": {100, 200}, "dir/subdir": {101, 201}, "dir/subdir/nestedfile": {102, 202}, "link": {103, 203}} {
		if err := os.Lchown(filepath.Join(src, p), o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	image := func(t *testing.T) string {
		d := t.TempDir()
		mkTree(t, d, "existingdir/existingsubdir d", "existingdir/existingfile f")
		for p, o := range map[string][2]int{"existingdir": {500, 600}, "existingdir/existingsubdir": {501, 601}, "existingdir/existingfile": {501, 601}} {
			if err := os.Lchown(filepath.Join(d, p), o[0], o[1]); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	steps := []Options{
		{Sources: []string{"/file", "/link"}, Dest: "/"},
		{Sources: []string{"/dir"}, Dest: "/dir"},
		{Sources: []string{"/dir/."}, Dest: "/existingdir"},
		{Sources: []string{"/file"}, Dest: "/a/b/"},
	}
	cases := []struct {
		name  string
		keep  bool
		chown *Owner
		want  []string
	}{
		{"context", false, nil, []string{"a d 0755 0:0", "a/b d 0755 0:0", "a/b/file f 0644 0:0", "dir d 0755 0:0",
			"dir/subdir d 0755 0:0", "dir/subdir/nestedfile f 0644 0:0", "existingdir d 0755 500:600",
			"existingdir/existingfile f 0644 501:601", "existingdir/existingsubdir d 0755 501:601", "existingdir/subdir d 0755 0:0",
			"existingdir/subdir/nestedfile f 0644 0:0", "file f 0644 0:0", "link f 0644 0:0"}},
		{"stage", true, nil, []string{"a d 0755 0:0", "a/b d 0755 0:0", "a/b/file f 0644 100:200", "dir d 0755 0:0",
			"dir/subdir d 0755 101:201", "dir/subdir/nestedfile f 0644 102:202", "existingdir d 0755 500:600",
			"existingdir/existingfile f 0644 501:601", "existingdir/existingsubdir d 0755 501:601", "existingdir/subdir d 0755 101:201",
			"existingdir/subdir/nestedfile f 0644 102:202", "file f 0644 100:200", "link f 0644 100:200"}},
		{"chown", true, &Owner{300, 400}, []string{"a d 0755 300:400", "a/b d 0755 300:400", "a/b/file f 0644 300:400", "dir d 0755 300:400",
			"dir/subdir d 0755 300:400", "dir/subdir/nestedfile f 0644 300:400", "existingdir d 0755 500:600",
			"existingdir/existingfile f 0644 501:601", "existingdir/existingsubdir d 0755 501:601", "existingdir/subdir d 0755 300:400",
			"existingdir/subdir/nestedfile f 0644 300:400", "file f 0644 300:400", "link f 0644 300:400"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := image(t)
			for _, o := range steps {
				o.Chown = tc.chown
				if _, err := Copy(context.Background(), Source{Root: src, KeepOwners: tc.keep}, dest, o); err != nil {
					t.Fatal(err)
				}
			}
			if d := diffLines(listTree(t, dest), tc.want); d != "" {
				t.Fatal(d)
			}
		})
	}
	t.Run("symlinks are lchowned", func(t *testing.T) {
		dest := t.TempDir()
		if _, err := Copy(context.Background(), Source{Root: src, KeepOwners: true}, dest, Options{Sources: []string{"/"}, Dest: "/"}); err != nil {
			t.Fatal(err)
		}
		if got := describe(t, filepath.Join(dest, "link"), "link"); got != "link l 103:203 ->file" {
			t.Fatalf("link: %s", got)
		}
	})
}

// Times are kept (fsutil's copyFileTimestamp), on files, symlinks and
// directories alike, including the top directory contents are copied into.
func TestCopyKeepsTimes(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	mkTree(t, src, "d/f f x", "d/sub/g f y", "d/l l f")
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	for _, p := range []string{"d/sub/g", "d/l", "d/f", "d/sub", "d"} {
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, p), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	chown, _ := testOwner()
	if _, err := Copy(context.Background(), Source{Root: src}, dest, Options{Sources: []string{"d"}, Dest: "/x", Chown: chown}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"x", "x/f", "x/sub", "x/sub/g", "x/l"} {
		if got := mtime(t, filepath.Join(dest, p)); !got.Equal(old) {
			t.Errorf("%s: mtime %v, want %v", p, got, old)
		}
	}
}

// Hardlinks among the entries of one match stay hardlinks (fsutil's inode
// map, one per copy call); across matches they are separate files.
func TestCopyHardlinks(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	mkTree(t, src, "d/a f data", "d/b h d/a", "d/sub/c h d/a", "d/other f data")
	chown, _ := testOwner()
	opts := Options{Sources: []string{"d"}, Dest: "/x", Chown: chown}
	if _, err := Copy(context.Background(), Source{Root: src}, dest, opts); err != nil {
		t.Fatal(err)
	}
	ino := func(p string) uint64 {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, p), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	if a := ino("x/a"); a != ino("x/b") || a != ino("x/sub/c") || a == ino("x/other") {
		t.Fatalf("inodes: a %d b %d sub/c %d other %d", a, ino("x/b"), ino("x/sub/c"), ino("x/other"))
	}
	opts = Options{Sources: []string{"d/a", "d/b"}, Dest: "/y/", Chown: chown}
	if _, err := Copy(context.Background(), Source{Root: src}, dest, opts); err != nil {
		t.Fatal(err)
	}
	if ino("y/a") == ino("y/b") {
		t.Fatal("separate sources were hardlinked")
	}
}

// Extended attributes are copied (fsutil's copyXAttrs), except overlayfs's
// own and SELinux labels.
func TestCopyXattrs(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	mkTree(t, src, "d/f f x", "d/sub d")
	err := unix.Setxattr(filepath.Join(src, "d/f"), "user.test", []byte("v1"), 0)
	testenv.Need(t, err == nil, "user xattrs on %s: %v", src, err)
	if err := unix.Setxattr(filepath.Join(src, "d/sub"), "user.dir", []byte("v2"), 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Setxattr(filepath.Join(src, "d/sub"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			t.Fatal(err)
		}
	}
	chown, _ := testOwner()
	if _, err := Copy(context.Background(), Source{Root: src}, dest, Options{Sources: []string{"d"}, Dest: "/x", Chown: chown}); err != nil {
		t.Fatal(err)
	}
	get := func(p, name string) string {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dest, p), name, buf)
		if err != nil {
			return err.Error()
		}
		return string(buf[:n])
	}
	if got := get("x/f", "user.test"); got != "v1" {
		t.Errorf("x/f user.test = %q", got)
	}
	if got := get("x/sub", "user.dir"); got != "v2" {
		t.Errorf("x/sub user.dir = %q", got)
	}
	if got := get("x/sub", "trusted.overlay.opaque"); got != unix.ENODATA.Error() {
		t.Errorf("x/sub trusted.overlay.opaque = %q, want it left out", got)
	}
}

// A chown the process may not do says why.
func TestChownErrorHints(t *testing.T) {
	for err, want := range map[error]string{
		unix.EPERM:  "chown /x 0:0: operation not permitted (a copy runs as root, or as root of the build's user namespace)",
		unix.EINVAL: "chown /x 0:0: invalid argument (is the id mapped?",
	} {
		if got := chownError("/x", 0, 0, err).Error(); !strings.HasPrefix(got, want) {
			t.Errorf("%v: %q, want %q", err, got, want)
		}
	}
	if os.Geteuid() != 0 { // and Copy reports it so
		src, dest := t.TempDir(), t.TempDir()
		mkTree(t, src, "f f x")
		_, err := Copy(context.Background(), Source{Root: src}, dest, Options{Sources: []string{"f"}, Dest: "/"})
		if err == nil || !strings.Contains(err.Error(), "a copy runs as root") {
			t.Fatalf("unprivileged COPY without --chown: %v", err)
		}
	}
}
