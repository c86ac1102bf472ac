package copier

import "testing"

// The tree of BuildKit's testExcludedFilesOnCopy.
var excludeTree = []string{
	"dir1/file-101.png f 0600 2", "dir1/file-102.txt f 0600 3", "dir1/file-103.jpeg f 0600 4",
	"dir2/file-201.pdf f 0600 6", "dir2/file-202.jpeg f 0600 7", "dir2/file-203.png f 0600 8",
	"dir3/file-301.mp3 f 0600 9", "dir3/file-302.mpeg f 0600 10",
	"dir4/file-401.txt f 0600 11", "dir4/file-402.txt l file-401.txt", "dir4/file-403.txt l file-404.txt",
}

// --exclude: fsutil copy's ExcludePatterns, matched below each source
// (BuildKit's testExcludedFilesOnCopy, builders 1 to 6).
func TestCopyExclude(t *testing.T) {
	runCopyCases(t, []copyCase{
		{name: "images below the context root", src: excludeTree,
			opts: Options{Sources: []string{"."}, Dest: "/1", Excludes: []string{"*/*.png", "*/*.jpeg"}},
			want: []string{"1 d 0755 O", "1/dir1 d 0755 O", "1/dir1/file-102.txt f 0600 O 3",
				"1/dir2 d 0755 O", "1/dir2/file-201.pdf f 0600 O 6",
				"1/dir3 d 0755 O", "1/dir3/file-301.mp3 f 0600 O 9", "1/dir3/file-302.mpeg f 0600 O 10",
				"1/dir4 d 0755 O", "1/dir4/file-401.txt f 0600 O 11",
				"1/dir4/file-402.txt l O ->file-401.txt", "1/dir4/file-403.txt l O ->file-404.txt"}},
		{name: "patterns are relative to the source dir", src: excludeTree,
			opts: Options{Sources: []string{"dir3/"}, Dest: "/3/", Excludes: []string{"*.mp3"}},
			want: []string{"3 d 0755 O", "3/file-302.mpeg f 0600 O 10"}},
		{name: "each wildcard match is filtered", src: excludeTree,
			opts: Options{Sources: []string{"dir*"}, Dest: "/4/", Excludes: []string{"*.mp3", "*.jpeg", "*.png", "*.pdf", "*.txt"}},
			want: []string{"4 d 0755 O", "4/file-302.mpeg f 0600 O 10"}},
		{name: "everything excluded leaves the created dir empty", src: excludeTree,
			opts: Options{Sources: []string{"dir*"}, Dest: "/6", Excludes: []string{"*"}},
			want: []string{"6 d 0755 O"}},
		{name: "an exception brings a file back with its parent", src: excludeTree,
			opts: Options{Sources: []string{"."}, Dest: "/7/", Excludes: []string{"dir*", "!dir1/file-102.txt"}},
			want: []string{"7 d 0755 O", "7/dir1 d 0755 O", "7/dir1/file-102.txt f 0600 O 3"}},
		{name: "** matches at any depth", src: excludeTree,
			opts: Options{Sources: []string{"."}, Dest: "/8/", Excludes: []string{"**/*.txt", "dir2", "dir3"}},
			want: []string{"8 d 0755 O", "8/dir1 d 0755 O", "8/dir1/file-101.png f 0600 O 2",
				"8/dir1/file-103.jpeg f 0600 O 4", "8/dir4 d 0755 O"}},
		// fsutil matches patterns against paths below the source only, so
		// a file named as a source is never excluded (moby/buildkit#5489).
		{name: "a file source itself is not excluded", src: []string{"a f A", "b f B"},
			opts: Options{Sources: []string{"*"}, Dest: "/9/", Excludes: []string{"a"}},
			want: []string{"9 d 0755 O", "9/a f 0644 O A", "9/b f 0644 O B"}},
	})
}

// .dockerignore: what it excludes is not in the context at all (BuildKit
// filters the transfer), so it is absent for COPY, wildcards and symlinks.
func TestCopyDockerignore(t *testing.T) {
	tree := []string{"keep f k", "secret f s", "sub/x f x", "sub/y.log f y", "link l sub"}
	runCopyCases(t, []copyCase{
		{name: "ignored files are absent from a dir copy", src: tree, ignore: []string{"secret", "**/*.log"},
			opts: Options{Sources: []string{"."}, Dest: "/c/"},
			want: []string{"c d 0755 O", "c/keep f 0644 O k", "c/link l O ->sub", "c/sub d 0755 O", "c/sub/x f 0644 O x"}},
		{name: "an ignored source is not found", src: tree, ignore: []string{"secret"},
			opts: Options{Sources: []string{"secret"}, Dest: "/c/"}, wantErr: `source "secret": not found: excluded by .dockerignore`},
		{name: "below an ignored dir is not found", src: tree, ignore: []string{"sub"},
			opts: Options{Sources: []string{"sub/x"}, Dest: "/c/"}, wantErr: "excluded by .dockerignore"},
		{name: "an exception keeps a file of an ignored dir", src: tree, ignore: []string{"sub", "!sub/x"},
			opts: Options{Sources: []string{"."}, Dest: "/c/"},
			want: []string{"c d 0755 O", "c/keep f 0644 O k", "c/link l O ->sub", "c/secret f 0644 O s",
				"c/sub d 0755 O", "c/sub/x f 0644 O x"}},
		{name: "an exception can be named as a source", src: tree, ignore: []string{"sub", "!sub/x"},
			opts: Options{Sources: []string{"sub/x"}, Dest: "/x"}, want: []string{"x f 0644 O x"}},
		{name: "wildcards skip ignored names", src: tree, ignore: []string{"secret", "sub/y.log"},
			opts: Options{Sources: []string{"s*"}, Dest: "/c/"}, want: []string{"c d 0755 O", "c/x f 0644 O x"}},
		{name: "an ignored symlink cannot be followed", src: tree, ignore: []string{"link"},
			opts: Options{Sources: []string{"link/x"}, Dest: "/c/"}, wantErr: "excluded by .dockerignore"},
		{name: "a symlink to an ignored target is not followed", src: tree, ignore: []string{"sub"},
			opts: Options{Sources: []string{"link/x"}, Dest: "/c/"}, wantErr: "excluded by .dockerignore"},
	})
}

// The tree of BuildKit's testCopyRelativeParents.
var parentsTree = []string{
	"test/a/b/c/d/e d", "test/a/b2/c/d/e d", "test/a/b/c2/d/e d", "test/a/b/c2/d/e2 d",
	"test/a/b/c/d/foo f", "test/a/b/c/d/e/bay f", "test/a/b2/c/d/e/bar f", "test/a/b/c2/d/e/baz f", "test/a/b/c2/d/e2/baz f",
}

// --parents: BuildKit's testCopyParents, testCopyRelativeParents and
// testCopyParentsMissingDirectory, target by target.
func TestCopyParents(t *testing.T) {
	p := func(dest string, srcs ...string) Options { return Options{Sources: srcs, Dest: dest, Parents: true} }
	runCopyCases(t, []copyCase{
		{name: "the path is kept", src: []string{"foo1 d 0700", "foo1/foo2 d 0700", "foo1/foo2/bar f 0600 testing", "foo1/foo2/baz f 0600 testing2"},
			opts: p("/", "foo1/foo2/bar"),
			want: []string{"foo1 d 0700 O", "foo1/foo2 d 0700 O", "foo1/foo2/bar f 0600 O testing"}},
		{name: "with a wildcard", src: []string{"foo1 d 0700", "foo1/foo2 d 0700", "foo1/foo2/bar f 0600 testing", "foo1/foo2/baz f 0600 testing2"},
			opts: p("/test/", "foo1/foo2/ba*"),
			want: []string{"test d 0755 O", "test/foo1 d 0700 O", "test/foo1/foo2 d 0700 O",
				"test/foo1/foo2/bar f 0600 O testing", "test/foo1/foo2/baz f 0600 O testing2"}},
		{name: "middle pivot", src: parentsTree, opts: p("/out/", "/test/a/b/./c/d"),
			want: []string{"out d 0755 O", "out/c d 0755 O", "out/c/d d 0755 O", "out/c/d/e d 0755 O",
				"out/c/d/e/bay f 0644 O", "out/c/d/foo f 0644 O"}},
		{name: "pivot at the end", src: parentsTree, opts: p("/out/", "/test/a/b/c/d/."),
			want: []string{"out d 0755 O", "out/test d 0755 O", "out/test/a d 0755 O", "out/test/a/b d 0755 O",
				"out/test/a/b/c d 0755 O", "out/test/a/b/c/d d 0755 O", "out/test/a/b/c/d/e d 0755 O",
				"out/test/a/b/c/d/e/bay f 0644 O", "out/test/a/b/c/d/foo f 0644 O"}},
		{name: "two pivots: the first counts", src: parentsTree, opts: p("/out/", "/test/a/./b/./c"),
			want: []string{"out d 0755 O", "out/b d 0755 O", "out/b/c d 0755 O", "out/b/c/d d 0755 O",
				"out/b/c/d/e d 0755 O", "out/b/c/d/e/bay f 0644 O", "out/b/c/d/foo f 0644 O"}},
		{name: "wildcard after the pivot", src: parentsTree, opts: p("/out/", "/test/a/./*/c"),
			want: []string{"out d 0755 O", "out/b d 0755 O", "out/b/c d 0755 O", "out/b/c/d d 0755 O",
				"out/b/c/d/e d 0755 O", "out/b/c/d/e/bay f 0644 O", "out/b/c/d/foo f 0644 O",
				"out/b2 d 0755 O", "out/b2/c d 0755 O", "out/b2/c/d d 0755 O", "out/b2/c/d/e d 0755 O",
				"out/b2/c/d/e/bar f 0644 O"}},
		{name: "wildcards on both sides", src: parentsTree, opts: p("/out/", "/test/a/b*/./c/**/e"),
			want: []string{"out d 0755 O", "out/c d 0755 O", "out/c/d d 0755 O", "out/c/d/e d 0755 O",
				"out/c/d/e/bar f 0644 O", "out/c/d/e/bay f 0644 O"}},
		{name: "two inputs", src: parentsTree, opts: p("/out/", "/test/a/b/c*/./d/**/baz", "/test/a/b*/./c/**/bar"),
			want: []string{"out d 0755 O", "out/c d 0755 O", "out/c/d d 0755 O", "out/c/d/e d 0755 O",
				"out/c/d/e/bar f 0644 O", "out/d d 0755 O", "out/d/e d 0755 O", "out/d/e/baz f 0644 O",
				"out/d/e2 d 0755 O", "out/d/e2/baz f 0644 O"}},
		{name: "a missing plain path is an error", src: parentsTree, opts: p("/out/", "/test/nonexistent-file"),
			wantErr: `source "/test/nonexistent-file": not found`},
		{name: "a wildcard matching nothing copies nothing", src: parentsTree, opts: p("/out/", "/test/a/b3*/c"),
			want: []string{"out d 0755 O"}},
		{name: "a wildcard after the pivot matching nothing", src: parentsTree, opts: p("/out/", "/test/a/b/./c3*"),
			want: []string{"out d 0755 O"}},
		{name: "with an exclude", src: parentsTree, opts: Options{Sources: []string{"/test/a/b/./c/d"}, Dest: "/out/", Parents: true, Excludes: []string{"**/foo"}},
			want: []string{"out d 0755 O", "out/c d 0755 O", "out/c/d d 0755 O", "out/c/d/e d 0755 O", "out/c/d/e/bay f 0644 O"}},
	})
}
