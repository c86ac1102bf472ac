package native_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepexec/stepexec/snapshot"
	"github.com/stepexec/stepexec/snapshot/native"
	"github.com/stepexec/stepexec/snapshot/snapshottest"
)

// open opens a store in a fresh directory; at cleanup, after the suite
// closed it, no snapshot may be left in it.
func open(t *testing.T) snapshot.Snapshotter {
	root := t.TempDir()
	s, err := native.Open(root)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left, err := os.ReadDir(filepath.Join(root, "snapshots")); err != nil || len(left) > 0 {
			t.Errorf("snapshots left after Close: %v (%v)", left, err)
		}
	})
	return s
}

func TestSnapshotter(t *testing.T) {
	snapshottest.Run(t, open)
}

// TestChangeRightAfterPrepare changes a file the moment Prepare returns,
// keeping its size: the change must still be seen (Prepare waits for the
// filesystem's clock to pass what it recorded).
func TestChangeRightAfterPrepare(t *testing.T) {
	s, err := native.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	parent := ""
	for i := range 30 {
		snap, err := s.Prepare(ctx, "step", parent)
		if err != nil {
			t.Fatal(err)
		}
		content := []byte{byte('a' + i%26)}
		if err := os.WriteFile(filepath.Join(snap.Dir, "f"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := s.Commit(ctx, "step")
		if err != nil {
			t.Fatal(err)
		}
		if c.Empty {
			t.Fatalf("step %d: writing %q right after Prepare went unseen", i, content)
		}
		parent = c.Layer.ID
	}
}

// TestOpen: a root is one process's; Open removes what a killed one left.
func TestOpen(t *testing.T) {
	root := t.TempDir()
	s, err := native.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := native.Open(root); err == nil {
		t.Error("a second Open of a root in use succeeded")
	}
	if _, err := s.Prepare(context.Background(), "left", ""); err != nil {
		t.Fatal(err)
	}
	// A killed process's snapshot, with a read-only directory in it.
	stale := filepath.Join(root, "snapshots", "stale", "tree", "ro")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(stale, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = native.Open(root)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s.Close()
	if left, err := os.ReadDir(filepath.Join(root, "snapshots")); err != nil || len(left) > 0 {
		t.Errorf("Open left %v (%v)", left, err)
	}
}
