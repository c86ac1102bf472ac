package native

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/moby/sys/userns"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/snapshot"
)

// The files of a layer's directory, layers/<id>.
const (
	tarName  = "layer.tar"
	metaName = "layer.json"
)

// layerMeta is layer.json.
type layerMeta struct {
	ID     string        `json:"id"`
	Parent string        `json:"parent,omitempty"`
	DiffID digest.Digest `json:"diff_id"`
	Size   int64         `json:"size"`
	Names  []string      `json:"names,omitempty"`
}

func (m layerMeta) layer() snapshot.Layer {
	return snapshot.Layer{ID: m.ID, Parent: m.Parent, DiffID: m.DiffID, Size: m.Size}
}

func (s *Store) layerDir(id string) string { return filepath.Join(s.root, "layers", id) }

// readMeta reads layer id's layer.json.
func (s *Store) readMeta(id string) (layerMeta, error) {
	var m layerMeta
	if validKey(id) != nil {
		return m, fmt.Errorf("no layer %q: %w", id, fs.ErrNotExist)
	}
	b, err := os.ReadFile(filepath.Join(s.layerDir(id), metaName))
	if err != nil {
		return m, fmt.Errorf("layer %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("layer %s: decoding %s: %w", id, metaName, err)
	}
	return m, nil
}

// Layer returns the layer with the given ID or name.
func (s *Store) Layer(idOrName string) (snapshot.Layer, error) {
	m, err := s.lookup(idOrName)
	if err != nil {
		return snapshot.Layer{}, fmt.Errorf("native: %w", err)
	}
	return m.layer(), nil
}

// lookup finds a layer by ID, else by name.
func (s *Store) lookup(idOrName string) (layerMeta, error) {
	m, err := s.readMeta(idOrName)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return m, err
	}
	for _, e := range entries {
		if other, err := s.readMeta(e.Name()); err == nil && slices.Contains(other.Names, idOrName) {
			return other, nil
		}
	}
	return layerMeta{}, fmt.Errorf("no layer %q: %w", idOrName, fs.ErrNotExist)
}

// chain returns parent and its ancestors, top first ("" = none).
func (s *Store) chain(parent string) ([]layerMeta, error) {
	if parent == "" {
		return nil, nil
	}
	top, err := s.lookup(parent)
	if err != nil {
		return nil, err
	}
	chain := []layerMeta{top}
	for id := top.Parent; id != ""; id = chain[len(chain)-1].Parent {
		m, err := s.readMeta(id)
		if err != nil {
			return nil, fmt.Errorf("layer %s's ancestor: %w", top.ID, err)
		}
		chain = append(chain, m)
	}
	return chain, nil
}

// apply unpacks the chain's tars into tree, base first, applying their
// whiteouts. Device nodes are skipped where they cannot be made.
func (s *Store) apply(ctx context.Context, tree string, chain []layerMeta) error {
	opts := &archive.TarOptions{InUserNS: userns.RunningInUserNS() || os.Geteuid() != 0}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.applyOne(tree, chain[i].ID, opts); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) applyOne(tree, id string, opts *archive.TarOptions) error {
	f, err := os.Open(filepath.Join(s.layerDir(id), tarName))
	if err != nil {
		return fmt.Errorf("layer %s: %w", id, err)
	}
	defer f.Close()
	// UnpackLayer, not ApplyUncompressedLayer: that one sets the
	// process-wide umask, which concurrent snapshots would race on.
	// Modes are set explicitly after creation either way.
	if _, err := archive.UnpackLayer(tree, f, opts); err != nil {
		return fmt.Errorf("applying layer %s: %w", id, err)
	}
	return nil
}

// store moves the staged layer directory (layer.tar inside) to
// layers/<m.ID> with its layer.json, or, when that layer exists already,
// adds m.Names to it and says so.
func (s *Store) store(staged string, m layerMeta) (reused bool, err error) {
	if m.Parent != "" {
		if _, err := s.readMeta(m.Parent); err != nil {
			return false, fmt.Errorf("parent %w", err)
		}
	}
	if old, err := s.readMeta(m.ID); err == nil {
		return true, s.addNames(old, m)
	}
	if err := writeMeta(staged, m); err != nil {
		return false, err
	}
	err = os.Rename(staged, s.layerDir(m.ID))
	if errors.Is(err, os.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
		// A concurrent Commit stored the same layer first.
		old, rerr := s.readMeta(m.ID)
		if rerr != nil {
			return false, rerr
		}
		return true, s.addNames(old, m)
	}
	if err != nil {
		return false, fmt.Errorf("storing layer %s: %w", m.ID, err)
	}
	return false, nil
}

// addNames checks that the stored layer old is m, and gives it m's names.
func (s *Store) addNames(old, m layerMeta) error {
	if old.DiffID != m.DiffID {
		return fmt.Errorf("existing layer %s has DiffID %s, expected %s", m.ID, old.DiffID, m.DiffID)
	}
	missing := false
	for _, n := range m.Names {
		if !slices.Contains(old.Names, n) {
			old.Names, missing = append(old.Names, n), true
		}
	}
	if !missing {
		return nil
	}
	s.mu.Lock() // layer.json rewrites, one at a time
	defer s.mu.Unlock()
	return writeMeta(s.layerDir(m.ID), old)
}

// writeMeta writes dir/layer.json atomically and durably.
func writeMeta(dir string, m layerMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, metaName+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, metaName))
}
