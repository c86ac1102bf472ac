package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stepexec/stepexec/internal/testenv"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// stepChanges makes every kind of change a step can make on baseTree:
// new files and dirs, a copied-up and modified file, a deleted file, a
// deleted-and-recreated (opaque) dir, a hard link, a symlink, a file
// capability and a user xattr.
func stepChanges(r string) error {
	for _, f := range []func() error{
		func() error { return os.WriteFile(filepath.Join(r, "new.txt"), []byte("hello"), 0o640) },
		func() error { return os.MkdirAll(filepath.Join(r, "srv/data"), 0o750) },
		func() error { return os.WriteFile(filepath.Join(r, "srv/data/f"), []byte("shared"), 0o644) },
		func() error { return os.Link(filepath.Join(r, "srv/data/f"), filepath.Join(r, "srv/data/g")) },
		func() error { return os.Symlink("../etc/motd", filepath.Join(r, "srv/motd")) },
		func() error {
			return os.WriteFile(filepath.Join(r, "etc/hosts"), []byte("10.0.0.1 x\n"), 0o644)
		},
		func() error { return os.Lchown(filepath.Join(r, "etc/hosts"), 1000, 1001) },
		func() error { return os.Remove(filepath.Join(r, "etc/motd")) },
		func() error { return os.RemoveAll(filepath.Join(r, "etc/apk")) },
		func() error { return os.Mkdir(filepath.Join(r, "etc/apk"), 0o700) },
		func() error { return os.WriteFile(filepath.Join(r, "etc/apk/world"), []byte("musl\n"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(r, "bin/ping"), []byte("ping"), 0o755) },
		func() error { return unix.Lsetxattr(filepath.Join(r, "bin/ping"), "security.capability", capNetRaw, 0) },
		func() error { return unix.Lsetxattr(filepath.Join(r, "new.txt"), "user.note", []byte("n"), 0) },
		func() error { return os.Chtimes(filepath.Join(r, "usr/share/doc/id"), fixedTime, fixedTime) },
	} {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// describeTree lists every entry under dir (not dir itself) with type,
// mode, owner, mtime in seconds, size, device, link target, content and all
// xattrs (overlay's included): what the overlay driver will serve.
func describeTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		mtime := st.Mtim.Sec
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			// A whiteout's time is when it was made: PutLayer makes it
			// while unpacking, not from the tar.
			mtime = 0
		}
		fmt.Fprintf(&b, "%s mode=%o uid=%d gid=%d mtime=%d size=%d rdev=%d", rel, st.Mode, st.Uid, st.Gid, mtime, st.Size, st.Rdev)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " content=%q", c)
		case unix.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " link=%q", l)
		}
		names, err := listXattrs(p)
		if err != nil {
			return err
		}
		slices.Sort(names)
		for _, n := range names {
			v, err := getXattr(p, n)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %s=%q", n, v)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func diffDir(s *Store, id string) string {
	return filepath.Join(s.graphRoot, "overlay", id, "diff")
}

func assertNoStaging(t *testing.T, s *Store) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.graphRoot, "overlay", "staging"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("staging directory not empty: %v", entries)
	}
}

// TestStagedCommitMatchesPutLayer commits a step's upper dir (moved into the
// store, no copy) and stores the same layer's Diff with PutLayer (unpacked
// by containers/storage itself): both layers must serve the same files, in
// the same whiteout/opaque format, and the same tar.
func TestStagedCommitMatchesPutLayer(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", baseTree)

	snap, err := s.Prepare(ctx, "step", base.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := stepChanges(snap.Dir); err != nil {
		s.Remove(context.Background(), "step")
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Lstat(filepath.Join(filepath.Dir(snap.Dir), "upper", "new.txt"), &before); err != nil {
		t.Fatal(err)
	}
	c, err := s.Commit(ctx, "step")
	if err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	if err := unix.Lstat(filepath.Join(diffDir(s, c.Layer.ID), "new.txt"), &after); err != nil {
		t.Fatal(err)
	}
	if before.Ino != after.Ino || before.Dev != after.Dev {
		t.Errorf("new.txt was copied (inode %d → %d), not moved into the layer", before.Ino, after.Ino)
	}
	assertNoStaging(t, s)

	names, _ := readLayer(t, s, c.Layer.ID) // checks Diff = DiffID, Size
	for _, want := range []string{"etc/.wh.motd", "etc/apk/.wh..wh..opq", "srv/data/g", "bin/ping"} {
		if !slices.Contains(names, want) {
			t.Errorf("layer lacks %s: %q", want, names)
		}
	}
	rc, err := s.Diff(ctx, c.Layer.ID)
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	_, err = tarball.ReadFrom(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err := s.store.PutLayer("", base.ID, nil, "", false, nil, bytes.NewReader(tarball.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if ref.UncompressedDigest != c.Layer.DiffID || ref.UncompressedSize != c.Layer.Size {
		t.Errorf("PutLayer of the Diff recorded %s/%d, staged layer %s/%d", ref.UncompressedDigest, ref.UncompressedSize, c.Layer.DiffID, c.Layer.Size)
	}
	staged, err := s.store.Layer(c.Layer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(staged.UIDs, ref.UIDs) || !slices.Equal(staged.GIDs, ref.GIDs) {
		t.Errorf("staged layer ids %v/%v, PutLayer's %v/%v", staged.UIDs, staged.GIDs, ref.UIDs, ref.GIDs)
	}
	got, want := describeTree(t, diffDir(s, c.Layer.ID)), describeTree(t, diffDir(s, ref.ID))
	if got != want {
		t.Errorf("staged diff dir differs from PutLayer's:\n--- staged\n%s--- PutLayer\n%s", got, want)
	}
	opq := archive.GetOverlayXattrName("opaque")
	if !strings.Contains(got, "etc/apk mode=") || !strings.Contains(got, opq+`="y"`) {
		t.Errorf("no %s on etc/apk:\n%s", opq, got)
	}
	var rootS, rootP unix.Stat_t
	if err := unix.Stat(diffDir(s, c.Layer.ID), &rootS); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(diffDir(s, ref.ID), &rootP); err != nil {
		t.Fatal(err)
	}
	if rootS.Mode != rootP.Mode || rootS.Uid != rootP.Uid || rootS.Gid != rootP.Gid {
		t.Errorf("diff dir root: staged mode %o %d:%d, PutLayer's %o %d:%d", rootS.Mode, rootS.Uid, rootS.Gid, rootP.Mode, rootP.Uid, rootP.Gid)
	}
	t.Logf("staged diff dir:\n%s", got)

	// A snapshot on the staged layer sees the step's result.
	view, err := s.Prepare(ctx, "view", c.Layer.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove(context.Background(), "view")
	for p, want := range map[string]string{"etc/apk/world": "musl\n", "srv/data/g": "shared", "etc/hosts": "10.0.0.1 x\n", "bin/tool": baseTree["bin/tool"]} {
		if b, err := os.ReadFile(filepath.Join(view.Dir, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, gone := range []string{"etc/motd", "etc/apk/arch"} {
		if _, err := os.Lstat(filepath.Join(view.Dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s visible on the staged layer: %v", gone, err)
		}
	}
}

// TestCommitAcrossMounts makes the store's overlay dir a mount of its own
// (as another tool may have left it), so the upper dir cannot be renamed
// into it: Commit must fall back to copying and still store the layer.
func TestCommitAcrossMounts(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", baseTree)
	home := filepath.Join(s.graphRoot, "overlay")
	if err := unix.Mount(home, home, "", unix.MS_BIND, ""); err != nil {
		testenv.Need(t, false, "cannot bind-mount %s: %v", home, err)
	}
	defer unix.Unmount(home, unix.MNT_DETACH)

	snap, err := s.Prepare(ctx, "step", base.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := stepChanges(snap.Dir); err != nil {
		s.Remove(context.Background(), "step")
		t.Fatal(err)
	}
	c, err := s.Commit(ctx, "step")
	if err != nil {
		t.Fatalf("Commit across mounts: %v", err)
	}
	names, _ := readLayer(t, s, c.Layer.ID)
	if !slices.Contains(names, "etc/apk/.wh..wh..opq") || !slices.Contains(names, "new.txt") {
		t.Errorf("layer entries %q", names)
	}
	assertNoStaging(t, s)
}

// TestStagedCommitFailureCleansStaging checks a failing ApplyStagedLayer
// (names taken by another layer) leaves no layer and no staging dir.
func TestStagedCommitFailureCleansStaging(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", baseTree)
	if _, err := s.store.CreateLayer("", "", []string{"taken"}, "", false, nil); err != nil {
		t.Fatal(err)
	}
	before, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Prepare(ctx, "step", base.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, "step", WithNames("taken")); !errors.Is(err, storage.ErrDuplicateName) {
		t.Fatalf("Commit with a taken name: %v, want ErrDuplicateName", err)
	}
	after, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d layers before the failed Commit, %d after", len(before), len(after))
	}
	assertNoStaging(t, s)
	if _, err := os.Stat(filepath.Dir(snap.Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot dir left: %v", err)
	}
}
