package copier

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"

	"github.com/stepexec/stepexec/dockerfile"
)

// copyCase is one COPY into an image: the source tree, the image before,
// and the image after (every entry, "O" standing for the test's owner) or
// the error. Trees are node specs (see mkTree).
type copyCase struct {
	name    string
	src     []string
	image   []string
	ignore  []string // .dockerignore patterns
	chmod   string
	opts    Options // Chown is set to the test owner
	want    []string
	wantErr string
	root    bool // needs root (e.g. it reads back files of mode 0000)
}

func runCopyCases(t *testing.T, cases []copyCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCopyCase(t, tc) })
	}
}

func runCopyCase(t *testing.T, tc copyCase) {
	t.Helper()
	if tc.root {
		needRoot(t)
	}
	srcDir, destDir := t.TempDir(), t.TempDir()
	t.Cleanup(func() { makeRemovable(srcDir); makeRemovable(destDir) })
	mkTree(t, srcDir, tc.src...)
	mkTree(t, destDir, tc.image...)
	src := Source{Root: srcDir}
	if tc.ignore != nil {
		pm, err := patternmatcher.New(tc.ignore)
		if err != nil {
			t.Fatal(err)
		}
		src.Ignore = pm
	}
	opts := tc.opts
	chown, owner := testOwner()
	opts.Chown = chown
	if tc.chmod != "" {
		c, err := dockerfile.ParseChmod(tc.chmod)
		if err != nil {
			t.Fatal(err)
		}
		opts.Chmod = c
	}
	res, err := Copy(context.Background(), src, destDir, opts)
	if tc.wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if d := diffLines(listTree(t, destDir), expandOwner(tc.want, owner)); d != "" {
		t.Fatal(d)
	}
	sum, err := Checksum(context.Background(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum != res.Digest {
		t.Fatalf("Checksum %s != Copy's digest %s", sum, res.Digest)
	}
}

// Destination rules: fsutil copy's prepareTargetDir and ensureEmptyFileTarget,
// BuildKit's testCopyOverrideFiles, testCopyRelative, testSymlinkDestination.
func TestCopyDestinationRules(t *testing.T) {
	foo := []string{"foo f hello"}
	runCopyCases(t, []copyCase{
		{name: "file into a dir named with a trailing slash", src: foo,
			opts: Options{Sources: []string{"foo"}, Dest: "/d/"},
			want: []string{"d d 0755 O", "d/foo f 0644 O hello"}},
		{name: "file to a new path without slash is that file", src: foo,
			opts: Options{Sources: []string{"foo"}, Dest: "/x"},
			want: []string{"x f 0644 O hello"}},
		{name: "missing parents are created 0755", src: foo,
			opts: Options{Sources: []string{"foo"}, Dest: "/a/b/x"},
			want: []string{"a d 0755 O", "a/b d 0755 O", "a/b/x f 0644 O hello"}},
		{name: "dest ending in /. is a directory", src: foo,
			opts: Options{Sources: []string{"foo"}, Dest: "/d/."},
			want: []string{"d d 0755 O", "d/foo f 0644 O hello"}},
		{name: "file into an existing dir named without slash", src: foo, image: []string{"x d 0700"},
			opts: Options{Sources: []string{"foo"}, Dest: "/x"},
			want: []string{"x d 0700 O", "x/foo f 0644 O hello"}},
		{name: "file replaces a file", src: foo, image: []string{"x f 0600 old"},
			opts: Options{Sources: []string{"foo"}, Dest: "/x"},
			want: []string{"x f 0644 O hello"}},
		{name: "file replaces a symlink in the dest dir, not its target", src: foo,
			image: []string{"d d", "d/foo l ../target", "target f 0600 keep"},
			opts:  Options{Sources: []string{"foo"}, Dest: "/d/"},
			want:  []string{"d d 0755 O", "d/foo f 0644 O hello", "target f 0600 O keep"}},
		{name: "file does not replace a directory", src: foo, image: []string{"d/foo d"},
			opts:    Options{Sources: []string{"foo"}, Dest: "/d/"},
			wantErr: "cannot replace the directory /d/foo"},
		{name: "dest symlink to a file is followed in the image", src: foo,
			image: []string{"link l /etc/target", "etc/target f 0600 old"},
			opts:  Options{Sources: []string{"foo"}, Dest: "/link"},
			want:  []string{"etc d 0755 O", "etc/target f 0644 O hello", "link l O ->/etc/target"}},
		{name: "dest through a relative symlink to a missing dir", src: foo,
			image: []string{"symlink l ../tmp/symlink-target"},
			opts:  Options{Sources: []string{"foo"}, Dest: "/symlink/"},
			want: []string{"symlink l O ->../tmp/symlink-target", "tmp d 0755 O",
				"tmp/symlink-target d 0755 O", "tmp/symlink-target/foo f 0644 O hello"}},
		{name: "dest below a file", src: foo, image: []string{"f f x"},
			opts: Options{Sources: []string{"foo"}, Dest: "/f/x"}, wantErr: "not a directory"},
		{name: "several files to one file name are refused", src: []string{"a f A", "b f B"},
			opts:    Options{Sources: []string{"a", "b"}, Dest: "/x"},
			wantErr: `"a" and "b" would both be copied to the file /x`},
		{name: "several files into an existing dir named without slash", src: []string{"a f A", "b f B"},
			image: []string{"x d"}, opts: Options{Sources: []string{"a", "b"}, Dest: "/x"},
			want: []string{"x d 0755 O", "x/a f 0644 O A", "x/b f 0644 O B"}},
		{name: "several directories merge into a dest without slash", src: []string{"dir1/a f 1", "dir2/b f 2"},
			opts: Options{Sources: []string{"dir*"}, Dest: "/5"},
			want: []string{"5 d 0755 O", "5/a f 0644 O 1", "5/b f 0644 O 2"}},
		{name: "a later source replaces an earlier one's file in a dir", src: []string{"x/a f 1", "y/a f 2"},
			opts: Options{Sources: []string{"x/a", "y/a"}, Dest: "/d/"},
			want: []string{"d d 0755 O", "d/a f 0644 O 2"}},
		{name: "copying twice gives the same tree", src: []string{"sub/dir1/dir2/foo f foo-contents"},
			image: []string{"sub/dir1/dir2/foo f 0600 old", "sub/dir1/keep f k"},
			opts:  Options{Sources: []string{"sub"}, Dest: "/sub"},
			want: []string{"sub d 0755 O", "sub/dir1 d 0755 O", "sub/dir1/dir2 d 0755 O",
				"sub/dir1/dir2/foo f 0644 O foo-contents", "sub/dir1/keep f 0644 O k"}},
	})
}

// Directory sources: CopyDirContentsOnly (BuildKit's testCopyWildcards
// subdest4-6, testCopyChownExistingDir's /existingdir).
func TestCopyDirectoryRules(t *testing.T) {
	src := []string{"sub d 0700", "sub/a f A", "sub/b d 0750", "sub/b/c f 0600 C"}
	contents := []string{"dst d 0755 O", "dst/a f 0644 O A", "dst/b d 0750 O", "dst/b/c f 0600 O C"}
	runCopyCases(t, []copyCase{
		{name: "contents into a new dir, which is 0755", src: src,
			opts: Options{Sources: []string{"sub"}, Dest: "/dst"}, want: contents},
		{name: "trailing slash on the source", src: src,
			opts: Options{Sources: []string{"sub/"}, Dest: "/dst"}, want: contents},
		{name: "trailing /. on the source", src: src,
			opts: Options{Sources: []string{"sub/."}, Dest: "/dst/"}, want: contents},
		{name: "merge keeps the existing dir and files, subdirs take the source's mode", src: src,
			image: []string{"dst d 0700", "dst/old f 0600 x", "dst/b d 0700"},
			opts:  Options{Sources: []string{"sub"}, Dest: "/dst"},
			want: []string{"dst d 0700 O", "dst/a f 0644 O A", "dst/b d 0750 O", "dst/b/c f 0600 O C",
				"dst/old f 0600 O x"}},
		{name: "directory onto a file is refused", src: src, image: []string{"dst f x"},
			opts: Options{Sources: []string{"sub"}, Dest: "/dst"}, wantErr: "non-directory /dst"},
		{name: "a subdirectory onto a dest symlink is refused", src: src,
			image: []string{"dst/b l /elsewhere", "elsewhere d"},
			opts:  Options{Sources: []string{"sub"}, Dest: "/dst"}, wantErr: "non-directory /dst/b"},
		{name: "the context root", src: []string{"foo f hello", "sub/a f A"},
			opts: Options{Sources: []string{"."}, Dest: "/all/"},
			want: []string{"all d 0755 O", "all/foo f 0644 O hello", "all/sub d 0755 O", "all/sub/a f 0644 O A"}},
		{name: "an empty directory", src: []string{"e d 0750"},
			opts: Options{Sources: []string{"e"}, Dest: "/x"}, want: []string{"x d 0755 O"}},
	})
}

// Wildcards and symlinked sources: BuildKit's testCopyWildcards,
// testEmptyWildcard, testCopySymlinks, testCopyFollowAllSymlinks,
// testCopyThroughSymlinkContext, testCopyThroughSymlinkMultiStage.
func TestCopySourceRules(t *testing.T) {
	wild := []string{"foo.go f foo", "bar.go f bar", "x.txt f x", "sub/dir1/dir2/foo f foo-contents"}
	links := []string{"bar f bar-contents", "foo l bar", "sub/lfile f lfile-contents", "sub/l0 l subfile",
		"sub/subfile f subfile-contents", "sub/l1 l second", "sub/second l baz", "sub/baz f baz-contents"}
	runCopyCases(t, []copyCase{
		{name: "*.go into a dir", src: wild, opts: Options{Sources: []string{"*.go"}, Dest: "/gofiles/"},
			want: []string{"gofiles d 0755 O", "gofiles/bar.go f 0644 O bar", "gofiles/foo.go f 0644 O foo"}},
		{name: "one match to a file name", src: wild, opts: Options{Sources: []string{"f*.go"}, Dest: "/foo2.go"},
			want: []string{"foo2.go f 0644 O foo"}},
		{name: "a matched dir gives its contents", src: wild, opts: Options{Sources: []string{"sub/*"}, Dest: "/subdest/"},
			want: []string{"subdest d 0755 O", "subdest/dir2 d 0755 O", "subdest/dir2/foo f 0644 O foo-contents"}},
		{name: "wildcard in a middle element", src: wild, opts: Options{Sources: []string{"sub/*/dir2/foo"}, Dest: "/subdest2/"},
			want: []string{"subdest2 d 0755 O", "subdest2/foo f 0644 O foo-contents"}},
		{name: "wildcard to a file name in a new dir", src: wild, opts: Options{Sources: []string{"sub/*/dir2/foo"}, Dest: "/subdest3/bar"},
			want: []string{"subdest3 d 0755 O", "subdest3/bar f 0644 O foo-contents"}},
		{name: "a wildcard matching nothing is not an error", src: []string{"foo f contents0"},
			opts: Options{Sources: []string{"foo", "nomatch*"}, Dest: "/"}, want: []string{"foo f 0644 O contents0"}},
		{name: "only a wildcard matching nothing copies nothing", src: []string{"foo f contents0"},
			opts: Options{Sources: []string{"nomatch*"}, Dest: "/new/"}, want: nil},
		{name: "a wildcard below a missing dir is an error", src: []string{"foo f x"},
			opts: Options{Sources: []string{"nodir/*.txt"}, Dest: "/"}, wantErr: `source "nodir/*.txt": not found`},
		{name: "a missing plain source is an error", src: []string{"foo f x"},
			opts: Options{Sources: []string{"foo", "missing"}, Dest: "/d/"}, wantErr: `source "missing": not found`},
		{name: "a wildcard matches names with wildcard characters", src: []string{"a*b f star", "axb f x", "ab/c f no"},
			opts: Options{Sources: []string{"a*b"}, Dest: "/d/"}, want: []string{"d d 0755 O", "d/a*b f 0644 O star", "d/axb f 0644 O x", "d/c f 0644 O no"}},
		{name: "a symlink source is followed", src: links, opts: Options{Sources: []string{"foo"}, Dest: "/"},
			want: []string{"foo f 0644 O bar-contents"}},
		{name: "symlinks a wildcard matches are followed", src: links, opts: Options{Sources: []string{"sub/l*"}, Dest: "/alllinks/"},
			want: []string{"alllinks d 0755 O", "alllinks/l0 f 0644 O subfile-contents",
				"alllinks/l1 f 0644 O baz-contents", "alllinks/lfile f 0644 O lfile-contents"}},
		{name: "symlinks inside a copied dir stay symlinks", src: []string{"bar f b", "foo d 0700", "foo/sub l ../bar"},
			opts: Options{Sources: []string{"foo"}, Dest: "/"}, want: []string{"sub l O ->../bar"}},
		{name: "a symlink named as the source is followed", src: []string{"bar f b", "foo d 0700", "foo/sub l ../bar"},
			opts: Options{Sources: []string{"foo/sub"}, Dest: "/bar"}, want: []string{"bar f 0644 O b"}},
		{name: "through a symlinked directory", src: []string{"link l sub", "sub d 0700", "sub/foo f contents"},
			opts: Options{Sources: []string{"link/foo"}, Dest: "/"}, want: []string{"foo f 0644 O contents"}},
		{name: "absolute symlinks resolve in the source root", src: []string{"out/sub/foo f data", "sub l /out/sub", "sub2 l out/sub"},
			opts: Options{Sources: []string{"/sub/foo", "/sub2/foo"}, Dest: "/d/"},
			want: []string{"d d 0755 O", "d/foo f 0644 O data"}},
		{name: "a symlink climbing out of the source root stays in it", src: []string{"etc/hostname f inroot", "evil l ../../../../../etc"},
			opts: Options{Sources: []string{"evil/hostname"}, Dest: "/x"}, want: []string{"x f 0644 O inroot"}},
		{name: "a symlink to a host file is not found in the root", src: []string{"evil l /etc/passwd"},
			opts: Options{Sources: []string{"evil"}, Dest: "/x"}, wantErr: `source "evil": not found (symlinks are followed inside`},
		{name: ".. in a source stops at the root", src: []string{"foo f hello"},
			opts: Options{Sources: []string{"../../foo"}, Dest: "/x"}, want: []string{"x f 0644 O hello"}},
		{name: "a dangling symlink source", src: []string{"l l missing"},
			opts: Options{Sources: []string{"l"}, Dest: "/x"}, wantErr: `source "l": not found`},
	})
}

// Check is BuildKit's "failed to calculate checksum …: not found": every
// plain source must exist and not be ignored; wildcards may match nothing.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, "foo f", "sub/x f", "secret f", "link l sub")
	pm, err := patternmatcher.New([]string{"secret"})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Root: dir, Ignore: pm}
	if err := Check(src, []string{"foo", "/sub/x", "link/x", "sub/./x", "*.nomatch", "nodir/*", "."}); err != nil {
		t.Fatalf("Check of present sources: %v", err)
	}
	err = Check(src, []string{"missing", "secret", "foo", "sub/missing", "sub/./y"})
	if err == nil {
		t.Fatal("Check of missing sources passed")
	}
	msg := err.Error()
	for _, want := range []string{`source "missing": not found`, `source "secret": not found: excluded by .dockerignore`,
		`source "sub/missing": not found`, `source "sub/./y": not found`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, `"foo"`) {
		t.Errorf("error %q names a present source", msg)
	}
}

// A cancelled context stops the copy with its error.
func TestCopyCancelled(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	mkTree(t, src, "d/a f a", "d/b f b", "f f f")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	chown, _ := testOwner()
	for _, s := range []string{"d", "f"} {
		_, err := Copy(ctx, Source{Root: src}, dest, Options{Sources: []string{s}, Dest: "/x/", Chown: chown})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("COPY %s: %v, want context.Canceled", s, err)
		}
		if _, err := Checksum(ctx, Source{Root: src}, Options{Sources: []string{s}, Dest: "/x/"}); !errors.Is(err, context.Canceled) {
			t.Errorf("Checksum %s: %v, want context.Canceled", s, err)
		}
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Errorf("a cancelled copy wrote %d entries", len(entries))
	}
}
