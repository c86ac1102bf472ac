package copier

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// escapeFixture is an image root next to a directory it must never touch.
type escapeFixture struct {
	base, root, outside string
	before              []string
}

func newEscapeFixture(t *testing.T, image ...string) *escapeFixture {
	t.Helper()
	base := t.TempDir()
	f := &escapeFixture{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	mkTree(t, f.outside, "sentinel f 0644 untouched", "dir/x f x")
	for i, s := range image {
		image[i] = strings.ReplaceAll(s, "OUTSIDE", f.outside)
	}
	if err := os.Mkdir(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	mkTree(t, f.root, image...)
	f.before = listTree(t, f.outside)
	return f
}

// intact fails the test if anything outside the image root changed.
func (f *escapeFixture) intact(t *testing.T) {
	t.Helper()
	if d := diffLines(listTree(t, f.outside), f.before); d != "" {
		t.Fatalf("outside the root changed: %s", d)
	}
	entries, err := os.ReadDir(f.base)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%s holds %d entries, want root and outside only", f.base, len(entries))
	}
}

// check fails the test unless nothing outside the root changed and the
// copy failed with wantErr or, when wantErr is "", wrote "evil" at want
// below the root (OUTSIDE in want is the outside directory's path).
func (f *escapeFixture) check(t *testing.T, err error, wantErr, want string) {
	t.Helper()
	f.intact(t)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error = %v, want %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	want = strings.ReplaceAll(want, "OUTSIDE", f.outside)
	if data, err := os.ReadFile(filepath.Join(f.root, want)); err != nil || string(data) != "evil" {
		t.Fatalf("root/%s: %q, %v", want, data, err)
	}
}

// Hostile images: every write resolves inside the root, as in a chroot.
func TestCopyDestinationEscapes(t *testing.T) {
	cases := []struct {
		name    string
		image   []string
		dest    string
		src     string // source to copy: "foo" (a file) or "tree" (a dir)
		want    string // a file the copy must have written below the root
		wantErr string
	}{
		{name: "absolute symlink to a host dir", image: []string{"dst l OUTSIDE"}, dest: "/dst/", src: "foo", want: "OUTSIDE/foo"},
		{name: "relative symlink climbing out", image: []string{"dst l ../../outside"}, dest: "/dst/", src: "foo", want: "outside/foo"},
		{name: "symlink to the host root on the way", image: []string{"a l /../../.."}, dest: "/a/outside/x", src: "foo", want: "outside/x"},
		{name: "dest symlink to a host file", image: []string{"dst l OUTSIDE/sentinel"}, dest: "/dst", src: "foo", want: "OUTSIDE/sentinel"},
		{name: "file over a symlink to a host file", image: []string{"d/foo l OUTSIDE/sentinel"}, dest: "/d/", src: "foo", want: "d/foo"},
		{name: "directory merged into a symlink to a host dir", image: []string{"d/sub l OUTSIDE/dir"}, dest: "/d", src: "tree", wantErr: "non-directory /d/sub"},
		{name: "directory contents into a symlink to a host dir", image: []string{"d l ../outside/dir"}, dest: "/d", src: "tree", want: "outside/dir/sub/x"},
		{name: "archive through a symlink to a host dir", image: []string{"d l OUTSIDE"}, dest: "/d/", src: "archive", want: "OUTSIDE/sentinel"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newEscapeFixture(t, tc.image...)
			src := t.TempDir()
			mkTree(t, src, "foo f evil", "tree/sub/x f evil")
			if err := os.WriteFile(filepath.Join(src, "archive"), tarOf(t, tent{spec: "sentinel f evil"}), 0o644); err != nil {
				t.Fatal(err)
			}
			chown, _ := testOwner()
			_, err := Copy(context.Background(), Source{Root: src}, f.root,
				Options{Sources: []string{tc.src}, Dest: tc.dest, Chown: chown, Unpack: tc.src == "archive"})
			f.check(t, err, tc.wantErr, tc.want)
		})
	}
}

// Hostile sources: symlinks in the context are never followed out of it.
func TestCopySourceEscapes(t *testing.T) {
	f := newEscapeFixture(t)
	ctx := filepath.Join(f.base, "root") // the context is the fixture's root here
	mkTree(t, ctx, "leak l "+f.outside+"/sentinel", "up l ../outside", "dir/deep l ../../outside/sentinel")
	dest := t.TempDir()
	chown, owner := testOwner()
	for _, s := range []string{"leak", "up/sentinel", "dir/deep"} {
		_, err := Copy(context.Background(), Source{Root: ctx}, dest, Options{Sources: []string{s}, Dest: "/x", Chown: chown})
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("COPY %s: %v, want not found", s, err)
		}
	}
	if _, err := Copy(context.Background(), Source{Root: ctx}, dest, Options{Sources: []string{"."}, Dest: "/all/", Chown: chown}); err != nil {
		t.Fatal(err)
	}
	want := expandOwner([]string{"all d 0755 O", "all/dir d 0755 O", "all/dir/deep l O ->../../outside/sentinel",
		"all/leak l O ->" + f.outside + "/sentinel", "all/up l O ->../outside"}, owner)
	if d := diffLines(listTree(t, dest), want); d != "" {
		t.Fatal(d)
	}
	f.intact(t)
}

// Hostile archives: ADD extracts with the destination as the archive's
// root (go-archive's chroot), so names and links stay below it.
func TestAddArchiveEscapes(t *testing.T) {
	cases := []struct {
		name    string
		ents    []tent
		want    string // written below root/dest
		wantErr string
	}{
		{name: "dot-dot names", ents: []tent{{spec: "../../outside/sentinel f evil"}}, want: "outside/sentinel"},
		{name: "absolute names", ents: []tent{{spec: "OUTSIDE/sentinel f evil"}}, want: "OUTSIDE/sentinel"},
		{name: "symlink to / then through it", ents: []tent{{spec: "evil l /"}, {spec: "evil/outside/sentinel f evil"}}, want: "outside/sentinel"},
		{name: "symlink climbing out then through it", ents: []tent{{spec: "up l ../../../.."}, {spec: "up/outside/sentinel f evil"}}, want: "outside/sentinel"},
		{name: "symlink to a host dir then through it", ents: []tent{{spec: "out l OUTSIDE"}, {spec: "out/sentinel f evil"}}, want: "OUTSIDE/sentinel"},
		{name: "file over a symlink to a host file", ents: []tent{{spec: "x l OUTSIDE/sentinel"}, {spec: "x f evil"}}, want: "x"},
		{name: "hardlink to a host file", ents: []tent{{spec: "h h ../../outside/sentinel"}}, wantErr: "hardlink target"},
		{name: "hardlink through a symlink to a host dir", ents: []tent{{spec: "s l OUTSIDE"}, {spec: "h h s/sentinel"}}, wantErr: "hardlink target"},
		{name: "hardlink to an absolute host path", ents: []tent{{spec: "h h OUTSIDE/sentinel"}}, wantErr: "hardlink target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newEscapeFixture(t)
			for i := range tc.ents {
				tc.ents[i].spec = strings.ReplaceAll(tc.ents[i].spec, "OUTSIDE", f.outside)
			}
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "a.tar"), tarOf(t, tc.ents...), 0o644); err != nil {
				t.Fatal(err)
			}
			chown, _ := testOwner()
			_, err := Copy(context.Background(), Source{Root: src}, f.root, Options{Sources: []string{"a.tar"}, Dest: "/dest/", Chown: chown, Unpack: true})
			f.check(t, err, tc.wantErr, filepath.Join("dest", tc.want))
		})
	}
}
