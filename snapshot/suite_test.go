package snapshot_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stepexec/stepexec/snapshot"
	"github.com/stepexec/stepexec/snapshot/native"
	"github.com/stepexec/stepexec/snapshot/snapshottest"
)

// openOverlay opens an overlay Store in a fresh directory; at cleanup,
// after the suite closed it, nothing may be mounted there.
func openOverlay(t *testing.T) snapshot.Snapshotter {
	dir := t.TempDir()
	s, err := snapshot.Open(snapshot.Options{Root: filepath.Join(dir, "graph"), RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		snapshot.AssertNoMountsUnder(t, dir)
	})
	return s
}

func TestSnapshotter(t *testing.T) {
	snapshottest.Run(t, openOverlay)
}

// TestBackendsAgree makes the same layers on the overlay Store and on the
// native backend, with every time fixed, and checks they have the same
// DiffIDs and IDs: the native backend's layers are the overlay's.
func TestBackendsAgree(t *testing.T) {
	ov := openOverlay(t)
	nat, err := native.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	S := snapshottest.Chtimes
	steps := [][]snapshottest.Change{
		snapshottest.BaseTree,
		{
			snapshottest.Write("new.txt", "hello"),
			snapshottest.Setxattr("new.txt", "user.note", "n"),
			snapshottest.Mkdir("srv", 0o750), snapshottest.Write("srv/data/f", "shared"),
			snapshottest.Link("srv/data/f", "srv/data/g"), snapshottest.Symlink("../etc/motd", "srv/motd"),
			snapshottest.Write("etc/hosts", "10.0.0.1 x\n"), snapshottest.Chown("etc/hosts", 1000, 1001),
			snapshottest.Rename("etc/motd", "etc/motd.old"), snapshottest.Remove("bin/tool"),
			snapshottest.RemoveAll("etc/apk"), snapshottest.Mkdir("etc/apk", 0o700),
			snapshottest.Write("etc/apk/world", "musl\n"), snapshottest.Chmod("usr/share/doc/id", 0o600),
			S("srv/data"), S("srv"), S("etc/apk"), S("etc"), S("bin"), S(""),
		},
		{snapshottest.RemoveAll("srv"), snapshottest.Write("usr/share/doc/id", "again\n"), S("usr/share/doc"), S(""),
			S("usr/share"), S("usr")},
	}
	parents := map[snapshot.Snapshotter]string{ov: "", nat: ""}
	for i, changes := range steps {
		var got []snapshot.Layer
		for _, s := range []snapshot.Snapshotter{ov, nat} {
			got = append(got, commitSteps(t, s, parents[s], changes))
			parents[s] = got[len(got)-1].ID
		}
		if got[0] != got[1] {
			t.Errorf("layer %d: overlay %+v, native %+v", i+1, got[0], got[1])
		}
	}
}

func commitSteps(t *testing.T, s snapshot.Snapshotter, parent string, changes []snapshottest.Change) snapshot.Layer {
	t.Helper()
	ctx := context.Background()
	snap, err := s.Prepare(ctx, "step", parent)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshottest.Apply(snap.Dir, changes...); err != nil {
		t.Fatal(err)
	}
	c, err := s.Commit(ctx, "step")
	if err != nil {
		t.Fatal(err)
	}
	return c.Layer
}
