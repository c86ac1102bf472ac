package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// StoreLayer is a layer record of a containers/storage overlay store.
type StoreLayer struct {
	ID     string         `json:"id"`
	Parent string         `json:"parent"`
	Flags  map[string]any `json:"flags"`
}

// Incomplete is containers/storage's mark on a layer whose creation or
// deletion did not finish.
func (l StoreLayer) Incomplete() bool { return l.Flags["incomplete"] == true }

// StoreImage is an image record.
type StoreImage struct {
	ID           string   `json:"id"`
	Names        []string `json:"names"`
	TopLayer     string   `json:"layer"`
	MappedLayers []string `json:"mapped-layers"`
}

// StoreContainer is a container record (podman's, buildah's).
type StoreContainer struct {
	ID    string `json:"id"`
	Layer string `json:"layer"`
}

// Store is what a graph root's metadata files say, read directly: loading
// the store through containers/storage would repair it first (it deletes
// incomplete layers when it loads them read-write).
type Store struct {
	Root       string
	Layers     []StoreLayer
	Images     []StoreImage
	Containers []StoreContainer
	// Refs are the layers stepexec's ref files name (the build cache's
	// records, under stepexec/refs/NAME/).
	Refs []string
}

// ReadStore reads the overlay store at graph root root. Missing metadata
// files (an empty store) read as no records.
func ReadStore(root string) (Store, error) {
	s := Store{Root: root}
	for _, f := range []struct {
		path string
		into any
	}{
		{"overlay-layers/layers.json", &s.Layers},
		{"overlay-images/images.json", &s.Images},
		{"overlay-containers/containers.json", &s.Containers},
	} {
		raw, err := os.ReadFile(filepath.Join(root, f.path))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, err
		}
		if err := json.Unmarshal(raw, f.into); err != nil {
			return s, fmt.Errorf("%s: %w", f.path, err)
		}
	}
	refs, _ := filepath.Glob(filepath.Join(root, "stepexec", "refs", "*", "*"))
	for _, p := range refs {
		raw, err := os.ReadFile(p)
		if err != nil {
			return s, err
		}
		var ref struct {
			Layer string `json:"layer"`
		}
		if json.Unmarshal(raw, &ref) == nil && ref.Layer != "" {
			s.Refs = append(s.Refs, ref.Layer)
		}
	}
	return s, nil
}

// LayerIDs lists the layers' IDs in the order the store records them.
func (s Store) LayerIDs() []string {
	ids := make([]string, 0, len(s.Layers))
	for _, l := range s.Layers {
		ids = append(ids, l.ID)
	}
	return ids
}

// Unreferenced lists the layers that no image, container or build cache
// entry uses, directly or as an ancestor: what a killed build may leave
// behind.
func (s Store) Unreferenced() []string {
	parent := map[string]string{}
	for _, l := range s.Layers {
		parent[l.ID] = l.Parent
	}
	used := map[string]bool{}
	mark := func(id string) {
		for ; id != "" && !used[id]; id = parent[id] {
			used[id] = true
		}
	}
	for _, img := range s.Images {
		mark(img.TopLayer)
		for _, m := range img.MappedLayers {
			mark(m)
		}
	}
	for _, c := range s.Containers {
		mark(c.Layer)
	}
	for _, r := range s.Refs {
		mark(r)
	}
	var out []string
	for _, l := range s.Layers {
		if !used[l.ID] {
			out = append(out, l.ID)
		}
	}
	return out
}

// Problems checks the store's consistency: every image's layers exist
// (with their overlay diff directories), no layer is incomplete or lacks
// its parent, the driver keeps no directory or short link of a layer the
// store does not know, and no staging directory is left. Check a store no
// command is using: a running one may be midway through any of these.
func (s Store) Problems() []string {
	var out []string
	known := map[string]StoreLayer{}
	for _, l := range s.Layers {
		known[l.ID] = l
	}
	overlay := filepath.Join(s.Root, "overlay")
	for _, l := range s.Layers {
		if l.Incomplete() {
			out = append(out, "layer "+l.ID+" is marked incomplete")
		}
		if _, ok := known[l.Parent]; l.Parent != "" && !ok {
			out = append(out, "layer "+l.ID+" has a missing parent "+l.Parent)
		}
		if fi, err := os.Stat(filepath.Join(overlay, l.ID, "diff")); err != nil || !fi.IsDir() {
			out = append(out, "layer "+l.ID+" has no diff directory")
		}
	}
	for _, img := range s.Images {
		for id := img.TopLayer; id != ""; id = known[id].Parent {
			if _, ok := known[id]; !ok {
				out = append(out, fmt.Sprintf("image %s %v: layer %s does not exist", img.ID, img.Names, id))
				break
			}
		}
	}
	out = append(out, s.driverLeftovers(known)...)
	return out
}

// driverLeftovers lists overlay driver state without a layer record.
func (s Store) driverLeftovers(known map[string]StoreLayer) []string {
	var out []string
	overlay := filepath.Join(s.Root, "overlay")
	entries, _ := os.ReadDir(overlay)
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "l":
			links, _ := os.ReadDir(filepath.Join(overlay, "l"))
			for _, link := range links {
				if _, err := os.Stat(filepath.Join(overlay, "l", link.Name())); err != nil {
					out = append(out, "overlay/l/"+link.Name()+" is a dangling link")
				}
			}
		case name == "staging":
			if left, _ := os.ReadDir(filepath.Join(overlay, name)); len(left) > 0 {
				out = append(out, fmt.Sprintf("overlay/staging holds %d leftover staging dirs", len(left)))
			}
		case e.IsDir() && len(name) == 64:
			if _, ok := known[name]; !ok {
				out = append(out, "overlay/"+name+" belongs to no layer")
			}
		}
	}
	return out
}

// CheckStore fails t unless the store at root is consistent (see
// Store.Problems), and returns what it holds.
func CheckStore(t testing.TB, root string) Store {
	t.Helper()
	s, err := ReadStore(root)
	if err != nil {
		t.Fatalf("reading store %s: %v", root, err)
	}
	if p := s.Problems(); len(p) > 0 {
		t.Errorf("store %s is inconsistent:\n  %s", root, strings.Join(slices.Sorted(slices.Values(p)), "\n  "))
	}
	return s
}
