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
// when the store is next opened, as that process's owner directory is; a
// link whose target exists stays. Without a dead process Open leaves the
// links alone (reading them all would cost every command), and Prune
// removes a dangling one.
func TestOpenDropsDanglingLinks(t *testing.T) {
	s, dir := openTestStore(t)
	graph := filepath.Join(dir, "graph")
	overlay := filepath.Join(graph, "overlay")
	if err := os.MkdirAll(filepath.Join(overlay, "present", "diff"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(overlay, "l", name)); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(name string) bool {
		_, err := os.Lstat(filepath.Join(overlay, "l", name))
		return err == nil
	}
	link("DANGLING", "../gone-layer/diff")
	link("PRESENT", "../present/diff")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The killed process's owner directory: its lock held by no one.
	dead := filepath.Join(graph, "stepexec", "snapshots", "odead")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{Root: graph, RunRoot: filepath.Join(dir, "run")}
	s2, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if exists("DANGLING") {
		t.Error("the dangling link is still there")
	}
	if !exists("PRESENT") {
		t.Error("a link to an existing layer dir went")
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("the dead process's owner directory is still there")
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	link("DANGLING2", "../another-gone-layer/diff")
	s3, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if !exists("DANGLING2") {
		t.Error("Open read the links with no dead process to clean up after")
	}
	if _, err := s3.Prune(PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if exists("DANGLING2") {
		t.Error("Prune left the dangling link")
	}
	if !exists("PRESENT") {
		t.Error("Prune removed a link to an existing layer dir")
	}
}
