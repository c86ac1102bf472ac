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
