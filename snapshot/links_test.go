package snapshot

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDropLayerLinks: after a failed layer creation only the failed layer's
// dangling short-name link goes; links of layers that exist stay.
func TestDropLayerLinks(t *testing.T) {
	root := t.TempDir()
	overlay := filepath.Join(root, "overlay")
	links := filepath.Join(overlay, "l")
	if err := os.MkdirAll(filepath.Join(overlay, "kept", "diff"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(links, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"FAILED":  "../failed/diff", // the layer whose creation failed
		"KEPT":    "../kept/diff",   // a layer that exists
		"SIMILAR": "../failed/diff/x",
	} {
		if err := os.Symlink(target, filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	s := &Store{graphRoot: root}
	s.dropLayerLinks("failed")
	s.dropLayerLinks("kept") // exists: nothing to drop
	var left []string
	entries, _ := os.ReadDir(links)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if got := filepath.Join(left...); got != filepath.Join("KEPT", "SIMILAR") {
		t.Errorf("links left: %v, want KEPT and SIMILAR", left)
	}
}

// A short-name link left by a process killed inside the overlay driver's
// layer creation (its layer record was incomplete and is gone) is removed
// when the store is next opened; a link whose target exists stays.
func TestOpenDropsDanglingLinks(t *testing.T) {
	s, dir := openTestStore(t)
	graph := filepath.Join(dir, "graph")
	overlay := filepath.Join(graph, "overlay")
	if err := os.MkdirAll(filepath.Join(overlay, "present", "diff"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"DANGLING": "../gone-layer/diff", "PRESENT": "../present/diff"} {
		if err := os.Symlink(target, filepath.Join(overlay, "l", name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{Root: graph, RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := os.Lstat(filepath.Join(overlay, "l", "DANGLING")); err == nil {
		t.Error("the dangling link is still there")
	}
	if _, err := os.Lstat(filepath.Join(overlay, "l", "PRESENT")); err != nil {
		t.Errorf("a link to an existing layer dir went: %v", err)
	}
}
