package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"

	"golang.org/x/sys/unix"
)

// baseTree is the synthetic base layer's content.
var baseTree = map[string]string{
	"etc/motd":         "welcome\n",
	"etc/hosts":        "127.0.0.1 localhost\n",
	"etc/apk/world":    "busybox\n",
	"etc/apk/arch":     "x86_64\n",
	"bin/tool":         "#!/bin/sh\necho tool\n",
	"usr/share/doc/id": "base\n",
}

func writeTree(t testing.TB, root string, tree map[string]string) {
	t.Helper()
	for p, content := range tree {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// commitTree prepares a snapshot on parent, writes tree into it, commits.
func commitTree(t testing.TB, s *Store, key, parent string, tree map[string]string) Layer {
	t.Helper()
	ctx := context.Background()
	snap, err := s.Prepare(ctx, key, parent)
	if err != nil {
		t.Fatalf("Prepare %s: %v", key, err)
	}
	writeTree(t, snap.Dir, tree)
	c, err := s.Commit(ctx, key)
	if err != nil {
		t.Fatalf("Commit %s: %v", key, err)
	}
	if c.Empty {
		t.Fatalf("Commit %s: empty", key)
	}
	return c.Layer
}

// The Snapshotter behaviour of Store (commit cases, chains, empty and
// reused layers, keys, failed commits) is tested by snapshottest's suite
// (suite_test.go); the tests here are about the store itself.

// TestDedupAddsNames: a commit that finds its layer in the store adds its
// names to it and makes no other layer.
func TestDedupAddsNames(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", baseTree)
	before, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, key := range []string{"one", "two"} {
		snap, err := s.Prepare(ctx, key, base.ID)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(snap.Dir, "same")
		if err := os.WriteFile(p, []byte("same"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fixedTime, fixedTime); err != nil {
			t.Fatal(err)
		}
		c, err := s.Commit(ctx, key, WithNames("layer-"+key))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Layer.ID)
	}
	after, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != ids[1] || len(after) != len(before)+1 {
		t.Errorf("layers %s and %s; %d layers before, %d after: want one new layer", ids[0], ids[1], len(before), len(after))
	}
	l, err := s.store.Layer("layer-two")
	if err != nil || l.ID != ids[0] {
		t.Errorf("dedup should add the name: Layer(layer-two) = %v, %v", l, err)
	}
}

// TestRemove: Remove unmounts, and keys may not be the owner directory's
// own names.
func TestRemove(t *testing.T) {
	s, dir := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", baseTree)
	snap, err := s.Prepare(ctx, "gone", base.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(mountsUnder(t, snap.Dir)) != 1 {
		t.Fatalf("snapshot %s is not mounted", snap.Dir)
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	// (Only stepexec/ is checked: other tools may mount graph/overlay.)
	assertNoMountsUnder(t, filepath.Join(dir, "graph", "stepexec"))
	if _, err := os.Stat(filepath.Dir(snap.Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot dir %s still there: %v", filepath.Dir(snap.Dir), err)
	}
	for _, bad := range []string{"lock", scratchName, leasesDir} {
		if _, err := s.Prepare(ctx, bad, ""); err == nil {
			t.Errorf("Prepare with key %q succeeded", bad)
		}
	}
}

// TestCommitFailureLeavesNothing makes Commit fail before and inside
// PutLayer and checks no layer, mount or snapshot dir is left.
func TestCommitFailureLeavesNothing(t *testing.T) {
	s, dir := openTestStore(t)
	base := commitTree(t, s, "base", "", baseTree)

	cases := []struct {
		name  string
		setup func(t *testing.T) (parent string, ctx context.Context)
	}{{
		name: "context canceled",
		setup: func(t *testing.T) (string, context.Context) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return base.ID, ctx
		},
	}, {
		name: "parent deleted",
		setup: func(t *testing.T) (string, context.Context) {
			return commitTree(t, s, "doomed-parent", base.ID, map[string]string{"p": "p"}).ID, context.Background()
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent, ctx := tc.setup(t)
			before, err := s.Layers()
			if err != nil {
				t.Fatal(err)
			}
			snap, err := s.Prepare(context.Background(), "fail", parent)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(snap.Dir, "f"), []byte("f"), 0o644); err != nil {
				t.Fatal(err)
			}
			if parent != base.ID {
				// Another tool (podman) deletes it: DeleteLayer itself
				// refuses while a snapshot stands on it.
				if err := s.store.DeleteLayer(parent); err != nil {
					t.Fatal(err)
				}
				before = slices.DeleteFunc(before, func(l Layer) bool { return l.ID == parent })
			}
			c, err := s.Commit(ctx, "fail")
			if err == nil {
				t.Fatalf("Commit succeeded: %+v", c)
			}
			t.Logf("Commit error (expected): %v", err)
			after, err := s.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) {
				t.Errorf("layers before %d, after failed Commit %d", len(before), len(after))
			}
			if _, err := os.Stat(filepath.Dir(snap.Dir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("snapshot dir left: %v", err)
			}
			assertNoMountsUnder(t, filepath.Join(dir, "graph", "stepexec"))
			assertNoStaging(t, s)
			if _, err := s.Commit(context.Background(), "fail"); err == nil {
				t.Error("second Commit of the same key succeeded")
			}
		})
	}
}

// TestChain checks a snapshot on a 3-layer chain sees all layers, with both
// mount paths (new mount API, mount(2) fallback).
func TestChain(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	l1 := commitTree(t, s, "l1", "", map[string]string{"one": "1", "gone": "x"})
	l2 := commitTree(t, s, "l2", l1.ID, map[string]string{"two": "2"})
	snap, err := s.Prepare(ctx, "l3", l2.ID)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, snap.Dir, map[string]string{"three": "3"})
	if err := os.Remove(filepath.Join(snap.Dir, "gone")); err != nil {
		t.Fatal(err)
	}
	c, err := s.Commit(ctx, "l3")
	if err != nil {
		t.Fatal(err)
	}
	l3 := c.Layer
	if l3.Parent != l2.ID || l2.Parent != l1.ID {
		t.Fatalf("chain parents wrong: %+v %+v", l3, l2)
	}
	for _, legacy := range []bool{false, true} {
		restore := setLowerdirAppend(!legacy)
		snap, err := s.Prepare(ctx, "view", l3.ID)
		restore()
		if err != nil {
			t.Fatalf("Prepare (legacy mount %v): %v", legacy, err)
		}
		for name, want := range map[string]string{"one": "1", "two": "2", "three": "3"} {
			if b, err := os.ReadFile(filepath.Join(snap.Dir, name)); err != nil || string(b) != want {
				t.Errorf("legacy=%v: %s = %q, %v; want %q", legacy, name, b, err, want)
			}
		}
		if _, err := os.Lstat(filepath.Join(snap.Dir, "gone")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("legacy=%v: whited-out file visible: %v", legacy, err)
		}
		if err := s.Remove(context.Background(), "view"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenRemovesStaleSnapshots kills a process that holds a snapshot and
// checks the next Open removes it, while a live owner's dir is kept.
func TestOpenRemovesStaleSnapshots(t *testing.T) {
	root := t.TempDir()
	merged, _ := runAndKillHelper(t, root)
	staleOwner := filepath.Dir(filepath.Dir(merged))

	// A live owner: its lock is held (here by the test itself).
	liveOwner := filepath.Join(root, "graph", "stepexec", "snapshots", "olive")
	if err := os.MkdirAll(filepath.Join(liveOwner, "k", "upper"), 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := lockFile(filepath.Join(liveOwner, "lock"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()

	s, err := Open(Options{Root: filepath.Join(root, "graph"), RunRoot: filepath.Join(root, "run")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		assertNoMountsUnder(t, root)
	}()
	if _, err := os.Stat(staleOwner); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale owner dir %s survived Open: %v", staleOwner, err)
	}
	if m := mountsUnder(t, staleOwner); len(m) > 0 {
		t.Errorf("stale mounts survived Open: %v", m)
	}
	if _, err := os.Stat(filepath.Join(liveOwner, "k", "upper")); err != nil {
		t.Errorf("live owner's snapshot removed by Open: %v", err)
	}
}

func TestDropMountProgram(t *testing.T) {
	got := dropMountProgram([]string{"mount_program=/usr/bin/fuse-overlayfs", "overlay.mount_program=/x", "overlay.mountopt=nodev", "skip_mount_home=true"})
	if want := []string{"overlay.mountopt=nodev", "skip_mount_home=true"}; !slices.Equal(got, want) {
		t.Errorf("dropMountProgram = %q, want %q", got, want)
	}
}

// TestAlpineBase imports the Alpine minirootfs as a base layer through a
// snapshot and checks its tar round-trips through the store.
func TestAlpineBase(t *testing.T) {
	f, err := os.Open(testenv.AlpineTarball(t))
	if err != nil {
		testenv.Need(t, false, "Alpine tarball not available: %v", err)
	}
	defer f.Close()
	s, _ := openTestStore(t)
	ctx := context.Background()
	snap, err := s.Prepare(ctx, "alpine", "")
	if err != nil {
		t.Fatal(err)
	}
	n := untar(t, f, snap.Dir)
	c, err := s.Commit(ctx, "alpine", WithNames("alpine-base"))
	if err != nil {
		t.Fatal(err)
	}
	names, entries := readLayer(t, s, c.Layer.ID)
	if len(names) != n || c.Files != n {
		t.Errorf("tarball has %d entries; layer has %d, Files = %d", n, len(names), c.Files)
	}
	if e := entries["bin/busybox"]; e.hdr == nil || e.hdr.Mode != 0o755 || e.hdr.Size < 500_000 {
		t.Errorf("bin/busybox missing or wrong in layer: %+v", e.hdr)
	}
	if e := entries["bin/sh"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "/bin/busybox" {
		t.Errorf("bin/sh should be a symlink to /bin/busybox: %+v", e.hdr)
	}
	// A step on it: remove motd.
	snap, err = s.Prepare(ctx, "step", c.Layer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(snap.Dir, "lib/ld-musl-x86_64.so.1")); err != nil {
		t.Errorf("base content not visible: %v", err)
	}
	if err := os.Remove(filepath.Join(snap.Dir, "etc/motd")); err != nil {
		t.Fatal(err)
	}
	c2, err := s.Commit(ctx, "step")
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := readLayer(t, s, c2.Layer.ID); !slices.Equal(names, []string{"etc/", "etc/.wh.motd"}) {
		t.Errorf("step layer = %q", names)
	}
}

// untar extracts a gzip'd tar into dir as a step would (ownership, modes,
// mtimes, links) and returns its entry count.
func untar(t *testing.T, r io.Reader, dir string) int {
	t.Helper()
	gz, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	n := 0
	type dirTime struct {
		path string
		mt   time.Time
	}
	var dirs []dirTime
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if name == "" || name == "." || name == "/" {
			continue
		}
		n++
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
			dirs = append(dirs, dirTime{p, h.ModTime})
		case tar.TypeReg:
			var b bytes.Buffer
			if _, err = io.Copy(&b, tr); err == nil {
				err = os.WriteFile(p, b.Bytes(), 0o600)
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, strings.TrimPrefix(h.Linkname, "./")), p)
		default:
			t.Fatalf("unexpected entry type %c for %s", h.Typeflag, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeLink {
			continue
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := unix.Chmod(p, uint32(h.Mode&0o7777)); err != nil {
				t.Fatal(err)
			}
		}
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i].path, dirs[i].mt, dirs[i].mt); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// BenchmarkStep measures one tiny RUN step's storage cost: Prepare on a
// small parent, write one small file, Commit (a new layer each time).
func BenchmarkStep(b *testing.B) {
	s, _ := openTestStore(b)
	ctx := context.Background()
	parent := commitTree(b, s, "parent", "", baseTree)
	var prepare, commit time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		snap, err := s.Prepare(ctx, "step", parent.ID)
		prepare += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		content := []byte(time.Now().String() + strings.Repeat("x", i%7))
		if err := os.WriteFile(filepath.Join(snap.Dir, "f"), content, 0o644); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		lease, err := s.NewLease()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t1 := time.Now()
		c, err := s.Commit(ctx, "step", WithLease(lease))
		commit += time.Since(t1)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if c.Layer.DiffID == "" || c.Layer.DiffID.Validate() != nil {
			b.Fatalf("bad layer %+v", c.Layer)
		}
		if got, err := lease.Release(); err != nil || len(got.Layers) != 1 {
			b.Fatalf("Release: %+v, %v", got, err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(prepare.Nanoseconds())/float64(b.N), "prepare-ns/op")
	b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N), "commit-ns/op")
}

func TestRootlessRunRoot(t *testing.T) {
	ownedSet := func(dirs ...string) func(string) bool {
		return func(d string) bool { return slices.Contains(dirs, d) }
	}
	cases := []struct {
		name   string
		xdg    string
		xdgSet bool
		owned  func(string) bool
		want   string
	}{
		{"xdg usable", "/run/user/1001", true, ownedSet("/run/user/1001"), "/run/user/1001/containers"},
		{"xdg elsewhere", "/tmp/xdg", true, ownedSet("/tmp/xdg", "/run/user/1001"), "/tmp/xdg/containers"},
		{"no xdg, /run/user", "", false, ownedSet("/run/user/1001"), "/run/user/1001/containers"},
		{"no xdg, nothing", "", false, ownedSet(), "/tmp/podman-run-1001/containers"},
		{"xdg unusable", "/run/user/1001", true, ownedSet(), "/tmp/containers-user-1001/containers"},
		{"xdg unusable, /run/user ok", "/nope", true, ownedSet("/run/user/1001"), "/run/user/1001/containers"},
	}
	for _, tc := range cases {
		if got := rootlessRunRoot(1001, tc.xdg, tc.xdgSet, tc.owned, "/tmp"); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestImageRecordsNameOnlyImages: the image half of the store cannot name
// or untag a layer.
func TestImageRecordsNameOnlyImages(t *testing.T) {
	s, _ := openTestStore(t)
	l := commitTree(t, s, "base", "", map[string]string{"a": "a"})
	rec := s.ImageRecords()
	if err := rec.AddNames(l.ID, []string{"sneaky"}); err == nil {
		t.Error("ImageRecords.AddNames named a layer")
	}
	if err := rec.RemoveNames(l.ID, []string{l.ID}); err == nil {
		t.Error("ImageRecords.RemoveNames worked on a layer")
	}
	if got, err := rec.Layer(l.ID); err != nil || got.UncompressedDigest != l.DiffID {
		t.Errorf("ImageRecords.Layer = %+v, %v", got, err)
	}
}
