package copier

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// mountOverlay mounts lower+upper at a new merged dir, as a snapshot's
// merged dir is, unmounted at the end of the test.
func mountOverlay(t *testing.T, lower string) (merged, upper string) {
	t.Helper()
	needRoot(t)
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work)
	testenv.Need(t, err == nil, "overlayfs: %v", err)
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	return merged, upper
}

// Copying into an overlay merged dir (the real destination) merges into
// lower directories, replaces lower files and follows lower symlinks in
// root, leaving the changes in the upper dir.
func TestCopyIntoOverlay(t *testing.T) {
	needRoot(t)
	lower := t.TempDir()
	mkTree(t, lower, "etc/passwd f old", "dir/a f A", "dir/sub d 0700", "link l /etc", "gone f g")
	merged, upper := mountOverlay(t, lower)
	if err := os.Remove(filepath.Join(merged, "gone")); err != nil { // a whiteout in upper
		t.Fatal(err)
	}
	src := t.TempDir()
	mkTree(t, src, "ctx/dir/b f B", "ctx/dir/sub/c f C", "ctx/etc/passwd f new", "ctx/gone f back", "foo f foo")
	for _, o := range []Options{{Sources: []string{"ctx"}, Dest: "/"}, {Sources: []string{"foo"}, Dest: "/link/"}} {
		if _, err := Copy(context.Background(), Source{Root: src}, merged, o); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"dir d 0755 0:0", "dir/a f 0644 0:0 A", "dir/b f 0644 0:0 B", "dir/sub d 0755 0:0", "dir/sub/c f 0644 0:0 C",
		"etc d 0755 0:0", "etc/foo f 0644 0:0 foo", "etc/passwd f 0644 0:0 new", "gone f 0644 0:0 back", "link l 0:0 ->/etc"}
	if d := diffLines(listTree(t, merged), want); d != "" {
		t.Fatal(d)
	}
	if d := diffLines(listTree(t, lower), []string{"dir d 0755 0:0", "dir/a f 0644 0:0 A", "dir/sub d 0700 0:0",
		"etc d 0755 0:0", "etc/passwd f 0644 0:0 old", "gone f 0644 0:0 g", "link l 0:0 ->/etc"}); d != "" {
		t.Fatalf("the lower layer changed: %s", d)
	}
	if data, err := os.ReadFile(filepath.Join(upper, "etc/foo")); err != nil || string(data) != "foo" {
		t.Fatalf("upper/etc/foo: %q, %v", data, err)
	}
}

// A read-only overlay view as the source (COPY --from a stage) keeps its
// owners with KeepOwners and shows no overlay xattrs.
func TestCopyFromOverlayView(t *testing.T) {
	needRoot(t)
	lower := t.TempDir()
	mkTree(t, lower, "app/bin f 0755 x", "app/data d 0750")
	if err := os.Lchown(filepath.Join(lower, "app/bin"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	view, _ := mountOverlay(t, lower)
	if err := os.MkdirAll(filepath.Join(view, "app/data/new"), 0o700); err != nil { // an opaque-free upper dir
		t.Fatal(err)
	}
	dest := t.TempDir()
	if _, err := Copy(context.Background(), Source{Root: view, KeepOwners: true}, dest, Options{Sources: []string{"/app"}, Dest: "/app"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"app d 0755 0:0", "app/bin f 0755 1000:1000 x", "app/data d 0750 0:0", "app/data/new d 0700 0:0"}
	if d := diffLines(listTree(t, dest), want); d != "" {
		t.Fatal(d)
	}
}
