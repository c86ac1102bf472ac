package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestPrepareOnLayerBeingStored: a snapshot prepared on a layer that
// CommitAsync recorded but the store has not stored yet (here: held up by
// the commit lock) sees the layer's files, before and after the store
// renames them into place; the committed snapshot's directory goes once
// the layer is stored and no snapshot stands on it; the child commits on
// the stored layer.
func TestPrepareOnLayerBeingStored(t *testing.T) {
	s, dir := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", baseTree)
	unlock, err := s.lockStore(commitLockName, unix.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Prepare(ctx, "a", base.ID)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, snap.Dir, map[string]string{"a": "from a", "sub/deep": "deep"})
	if err := os.Remove(filepath.Join(snap.Dir, "etc", "motd")); err != nil {
		t.Fatal(err)
	}
	c, wait, err := s.CommitAsync(ctx, "a")
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	if c.Layer.ID == "" || c.Layer.Parent != base.ID || c.Layer.DiffID == "" {
		t.Errorf("recorded layer %+v", c.Layer)
	}
	child, err := s.Prepare(ctx, "b", c.Layer.ID)
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	sees := func(when string) {
		t.Helper()
		for name, want := range map[string]string{"a": "from a", "sub/deep": "deep", "etc/hosts": baseTree["etc/hosts"]} {
			if got, err := os.ReadFile(filepath.Join(child.Dir, name)); err != nil || string(got) != want {
				t.Errorf("%s: %s reads %q, %v; want %q", when, name, got, err, want)
			}
		}
		if _, err := os.Lstat(filepath.Join(child.Dir, "etc", "motd")); err == nil {
			t.Errorf("%s: the file the layer deletes is there", when)
		}
	}
	sees("while the layer is stored")
	if hasLayer(s, c.Layer.ID) {
		t.Error("the layer is stored while the commit lock is held")
	}
	unlock()
	stored, err := wait()
	if err != nil || stored.Layer.ID != c.Layer.ID || !hasLayer(s, c.Layer.ID) {
		t.Fatalf("wait = %+v, %v; want layer %s stored", stored, err, c.Layer.ID)
	}
	sees("once it is stored")
	committed := filepath.Join(s.ownerDir, "a")
	if _, err := os.Stat(committed); err != nil {
		t.Errorf("the committed snapshot's directory went while a snapshot stands on its upper dir: %v", err)
	}
	writeTree(t, child.Dir, map[string]string{"b": "from b", "sub/tmp": "gone again"})
	// sub is copied up and left as it was: the commit drops it, which
	// takes the lower dirs of the layer stored since the child's Prepare.
	if err := os.Remove(filepath.Join(child.Dir, "sub", "tmp")); err != nil {
		t.Fatal(err)
	}
	cb, err := s.Commit(ctx, "b")
	if err != nil || cb.Layer.Parent != c.Layer.ID {
		t.Fatalf("the child's commit: %+v, %v", cb, err)
	}
	if names, _ := readLayer(t, s, cb.Layer.ID); !slices.Equal(names, []string{"b"}) {
		t.Errorf("the child's layer holds %q, want only b (sub was only copied up)", names)
	}
	if _, err := os.Stat(committed); err == nil {
		t.Error("the committed snapshot's directory is still there with nothing on it")
	}
	testenv.CheckStore(t, filepath.Join(dir, "graph"))
}

// TestCommitWaitsForParentBeingStored: a child's Commit stores it only
// after its parent; a View of a layer being stored waits for it too.
func TestCommitWaitsForParentBeingStored(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	snap, err := s.Prepare(ctx, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, snap.Dir, baseTree)
	c, wait, err := s.CommitAsync(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	child := commitTree(t, s, "b", c.Layer.ID, map[string]string{"b": "b"})
	if !hasLayer(s, c.Layer.ID) || child.Parent != c.Layer.ID {
		t.Errorf("child %+v committed before its parent %s was stored", child, c.Layer.ID)
	}
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	v, err := s.View(ctx, "v", child.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(v.Dir, "b")); err != nil || string(got) != "b" {
		t.Errorf("view: %q, %v", got, err)
	}
	if err := s.Remove(ctx, "v"); err != nil {
		t.Fatal(err)
	}
}
