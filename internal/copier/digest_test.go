package copier

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

var digestTree = []string{"d/f f hello", "d/sub/g f 0600 gee", "d/l l f", "d/h h d/f", "top f T", "d/skip.log f log", "other f o"}

func digestOpts() Options {
	return Options{Sources: []string{"d", "top"}, Dest: "/x/", Excludes: []string{"*.log"}}
}

func checksum(t *testing.T, src Source, opts Options) digest.Digest {
	t.Helper()
	d, err := Checksum(context.Background(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The digest ignores times, inode numbers and where the tree lives, and
// Copy returns the same one as Checksum.
func TestDigestIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	mkTree(t, a, digestTree...)
	mkTree(t, b, digestTree...)
	old := time.Unix(1e9, 0)
	if err := os.Chtimes(filepath.Join(b, "d/f"), old, old); err != nil {
		t.Fatal(err)
	}
	// A new inode with the same content.
	data, _ := os.ReadFile(filepath.Join(b, "top"))
	os.Remove(filepath.Join(b, "top"))
	os.WriteFile(filepath.Join(b, "top"), data, 0o644)
	da := checksum(t, Source{Root: a}, digestOpts())
	if db := checksum(t, Source{Root: b}, digestOpts()); da != db {
		t.Fatalf("same trees: %s != %s", da, db)
	}
	if again := checksum(t, Source{Root: a}, digestOpts()); again != da {
		t.Fatalf("second checksum %s != %s", again, da)
	}
	opts := digestOpts()
	opts.Chown, _ = testOwner()
	res, err := Copy(context.Background(), Source{Root: a}, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := checksum(t, Source{Root: a}, opts); res.Digest != want {
		t.Fatalf("Copy's digest %s != Checksum's %s", res.Digest, want)
	}
	if !strings.HasPrefix(string(da), "sha256:") || da.Validate() != nil {
		t.Fatalf("digest %q", da)
	}
}

// Each change to what Copy would write changes the digest; changes to what
// it would not write (times, excluded, ignored or unnamed files, Dest,
// which the caller keys on) leave it alone.
func TestDigestChanges(t *testing.T) {
	cases := []struct {
		name    string
		change  func(t *testing.T, dir string, src *Source, opts *Options)
		changes bool
	}{
		{"content", func(t *testing.T, d string, _ *Source, _ *Options) { write(t, d, "d/f", "hellO") }, true},
		{"content of a nested file", func(t *testing.T, d string, _ *Source, _ *Options) { write(t, d, "d/sub/g", "gEe") }, true},
		{"file mode", func(t *testing.T, d string, _ *Source, _ *Options) { chmod(t, d, "d/sub/g", 0o640) }, true},
		{"directory mode", func(t *testing.T, d string, _ *Source, _ *Options) { chmod(t, d, "d/sub", 0o700) }, true},
		{"symlink target", func(t *testing.T, d string, _ *Source, _ *Options) { relink(t, d, "d/l", "sub") }, true},
		{"rename", func(t *testing.T, d string, _ *Source, _ *Options) { rename(t, d, "d/sub/g", "d/sub/g2") }, true},
		{"symlink becomes a file", func(t *testing.T, d string, _ *Source, _ *Options) {
			os.Remove(filepath.Join(d, "d/l"))
			write(t, d, "d/l", "f")
		}, true},
		{"added file", func(t *testing.T, d string, _ *Source, _ *Options) { write(t, d, "d/new", "") }, true},
		{"added empty directory", func(t *testing.T, d string, _ *Source, _ *Options) { os.Mkdir(filepath.Join(d, "d/e"), 0o755) }, true},
		{"removed file", func(t *testing.T, d string, _ *Source, _ *Options) { os.Remove(filepath.Join(d, "d/sub/g")) }, true},
		{"hardlink becomes a copy", func(t *testing.T, d string, _ *Source, _ *Options) {
			os.Remove(filepath.Join(d, "d/h"))
			write(t, d, "d/h", "hello")
		}, true},
		{"xattr", func(t *testing.T, d string, _ *Source, _ *Options) {
			err := unix.Setxattr(filepath.Join(d, "d/f"), "user.k", []byte("v"), 0)
			if err != nil {
				t.Skipf("user xattrs: %v", err)
			}
		}, true},
		{"--chmod", func(t *testing.T, _ string, _ *Source, o *Options) { o.Chmod = mustChmod(t, "0755") }, true},
		{"--chown", func(t *testing.T, _ string, _ *Source, o *Options) { o.Chown = &Owner{UID: 1, GID: 1} }, true},
		{"--chown to 0:0 is the default", func(t *testing.T, _ string, _ *Source, o *Options) { o.Chown = &Owner{} }, false},
		{"source owners kept", func(t *testing.T, d string, s *Source, _ *Options) {
			if os.Geteuid() == 0 { // else the files are the test user's already
				if err := os.Lchown(filepath.Join(d, "d/f"), 5, 5); err != nil {
					t.Fatal(err)
				}
			}
			s.KeepOwners = true
		}, true},
		{"source order", func(t *testing.T, _ string, _ *Source, o *Options) { o.Sources = []string{"top", "d"} }, true},
		{"--parents", func(t *testing.T, _ string, _ *Source, o *Options) { o.Parents = true }, true},
		{"an exclude that removes a file", func(t *testing.T, _ string, _ *Source, o *Options) { o.Excludes = append(o.Excludes, "sub") }, true},
		{"times", func(t *testing.T, d string, _ *Source, _ *Options) {
			for _, p := range []string{"d", "d/f", "d/sub", "top"} {
				os.Chtimes(filepath.Join(d, p), time.Unix(5, 0), time.Unix(5, 0))
			}
		}, false},
		{"an excluded file", func(t *testing.T, d string, _ *Source, _ *Options) { write(t, d, "d/skip.log", "changed") }, false},
		{"an ignored file", func(t *testing.T, d string, s *Source, _ *Options) {
			pm, _ := patternmatcher.New([]string{"d/sub/g"})
			s.Ignore = pm
			write(t, d, "d/sub/g", "changed, but ignored")
		}, true}, // ignoring it removes it; the change itself is then invisible (next case)
		{"a file outside the sources", func(t *testing.T, d string, _ *Source, _ *Options) { write(t, d, "other", "changed") }, false},
		{"the destination", func(t *testing.T, _ string, _ *Source, o *Options) { o.Dest = "/elsewhere" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mkTree(t, dir, digestTree...)
			base := checksum(t, Source{Root: dir}, digestOpts())
			src, opts := Source{Root: dir}, digestOpts()
			tc.change(t, dir, &src, &opts)
			if got := checksum(t, src, opts); (got != base) != tc.changes {
				t.Fatalf("digest changed: %v, want %v", got != base, tc.changes)
			}
		})
	}
	t.Run("a change to an ignored file", func(t *testing.T) {
		dir := t.TempDir()
		mkTree(t, dir, digestTree...)
		pm, _ := patternmatcher.New([]string{"d/sub/g"})
		src := Source{Root: dir, Ignore: pm}
		base := checksum(t, src, digestOpts())
		write(t, dir, "d/sub/g", "changed")
		if got := checksum(t, src, digestOpts()); got != base {
			t.Fatal("an ignored file changed the digest")
		}
	})
}

// The archive ADD extracts is hashed whole; whether it is extracted is part
// of the digest.
func TestDigestArchive(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.tar"), tarOf(t, tent{spec: "foo f x"}), 0o644)
	opts := Options{Sources: []string{"a.tar"}, Dest: "/"}
	copied := checksum(t, Source{Root: dir}, opts)
	opts.Unpack = true
	extracted := checksum(t, Source{Root: dir}, opts)
	if copied == extracted {
		t.Fatal("ADD and COPY of an archive have one digest")
	}
	os.WriteFile(filepath.Join(dir, "a.tar"), tarOf(t, tent{spec: "foo f y"}), 0o644)
	if checksum(t, Source{Root: dir}, opts) == extracted {
		t.Fatal("a changed archive has the same digest")
	}
}

func write(t *testing.T, dir, p, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, dir, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(filepath.Join(dir, p), m); err != nil {
		t.Fatal(err)
	}
}

func relink(t *testing.T, dir, p, target string) {
	t.Helper()
	os.Remove(filepath.Join(dir, p))
	if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, dir, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		t.Fatal(err)
	}
}
