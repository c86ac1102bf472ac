package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// Garbage collection. One rule decides what stepexec deletes: a layer goes
// when stepexec made it (MadeFlag) and no root keeps it. The roots, each
// keeping a layer and its ancestors, are
//
//   - every image in the store, any tool's (TopLayer, MappedTopLayers),
//   - every container (podman's, buildah's working containers),
//   - the leases and snapshots of live stepexec processes (heldLayers),
//   - the ref files under <graphroot>/stepexec/refs/ (RefsDir: the build
//     cache's entries), whoever wrote them.
//
// Layers without MadeFlag are other tools' (podman, buildah, maybe still
// being made): they are never deleted, and a layer with a child is not
// deleted either (containers/storage refuses), whatever made the child.
//
// Images are deleted by rmi (DeleteImage) and, with `prune --all`, when
// stepexec made them and they have lost every name; either way only once no
// lease or snapshot holds a layer they would take with them. The layers a
// ref keeps stay without the image (a build cache entry outlives the image
// its step was part of).

// MadeFlag is the containers/storage flag stepexec sets on the layers (and
// images, package image) it creates.
const MadeFlag = "stepexec"

// Collected is what a collection deleted.
type Collected struct {
	Images []string // image IDs
	Layers []Layer
}

// Bytes is the uncompressed size of the deleted layers.
func (c Collected) Bytes() int64 {
	var n int64
	for _, l := range c.Layers {
		n += l.Size
	}
	return n
}

func (c *Collected) add(o Collected) {
	c.Images = append(c.Images, o.Images...)
	c.Layers = append(c.Layers, o.Layers...)
}

// The collector's queues, in <graphroot>/stepexec/gc: journals of leases
// whose process died (queued by Open), and images rmi untagged while a
// build held their layers (queued by DeleteImage).
const (
	gcDirName    = "gc"
	orphansQueue = "orphans"
	imagesQueue  = "released"
)

func (s *Store) queue(name string) string { return filepath.Join(s.base, gcDirName, name) }

// queued lists the entries of a queue.
func (s *Store) queued(name string) ([]string, error) {
	entries, err := os.ReadDir(s.queue(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot: reading %s: %w", s.queue(name), err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}

// anyQueued tells whether a queue may hold work (an unreadable one may).
func (s *Store) anyQueued() bool {
	for _, q := range []string{orphansQueue, imagesQueue} {
		if names, err := s.queued(q); err != nil || len(names) > 0 {
			return true
		}
	}
	return false
}

// PruneOptions selects what Prune removes besides leftovers.
type PruneOptions struct {
	// DanglingImages: also the images stepexec made that have no name
	// left (an older build whose -t name went to a newer one).
	DanglingImages bool
}

// Prune deletes every layer stepexec made that no root keeps, wherever it
// came from (a build killed before its journal existed, a directory
// removed by hand), and with opts.DanglingImages the nameless images it
// made. What this Store's Open collected, and how that failed, is part
// of the result.
func (s *Store) Prune(opts PruneOptions) (Collected, error) {
	c, err := s.sweep(sweepOptions{allMade: true, danglingImages: opts.DanglingImages})
	s.dropDanglingLinks()
	s.mu.Lock()
	c.Images = append(slices.Clone(s.openCollected.Images), c.Images...)
	c.Layers = append(slices.Clone(s.openCollected.Layers), c.Layers...)
	err = errors.Join(s.openErr, err)
	s.mu.Unlock()
	return c, err
}

// DeleteImage deletes image id and the layers only it uses, as
// containers/storage's DeleteImage does (refusing an image a container
// uses), unless a live stepexec process holds one of those layers: a
// build standing on the image. Then the image only loses its names (kept
// is true) and is deleted with its layers once nothing holds them, by the
// collection that ends the holder's lease or, should it die, by the next
// Open.
func (s *Store) DeleteImage(id string) (kept bool, err error) {
	unlock, err := s.lockStore(gcLockName, unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	defer unlock()
	img, err := s.store.Image(id)
	if err != nil {
		return false, fmt.Errorf("snapshot: image %s: %w", id, err)
	}
	held, err := s.heldClosure()
	if err != nil {
		return false, err
	}
	refs, err := s.refsClosure()
	if err != nil {
		return false, err
	}
	deleted, _, err := s.dropImage(img.ID, held, refs)
	if err != nil || deleted {
		return false, err
	}
	if err := os.MkdirAll(s.queue(imagesQueue), 0o700); err != nil {
		return false, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.queue(imagesQueue), img.ID), nil, 0o600); err != nil {
		return false, fmt.Errorf("snapshot: queueing image %s for deletion: %w", img.ID, err)
	}
	if len(img.Names) == 0 {
		return true, nil
	}
	if err := s.store.RemoveNames(img.ID, img.Names); err != nil {
		return false, fmt.Errorf("snapshot: untagging image %s: %w", img.ID, err)
	}
	return true, nil
}

// dropImage deletes image id with the layers only it uses unless held (a
// running build) holds one of them, and says whether it did. The layers
// refs (the build cache) keeps stay, without the image.
func (s *Store) dropImage(id string, held, refs map[string]bool) (bool, []Layer, error) {
	would, err := s.store.DeleteImage(id, false)
	if err != nil {
		return false, nil, fmt.Errorf("snapshot: deleting image %s: %w", id, err)
	}
	var layers []Layer
	cached := false
	for _, l := range would {
		if held[l] {
			return false, nil, nil
		}
		cached = cached || refs[l]
		if sl, err := s.store.Layer(l); err == nil {
			layers = append(layers, toLayer(sl))
		}
	}
	if !cached {
		if _, err := s.store.DeleteImage(id, true); err != nil {
			return false, nil, fmt.Errorf("snapshot: deleting image %s: %w", id, err)
		}
		return true, layers, nil
	}
	// The image record alone, then its layers the cache does not keep:
	// those are the top of its chain (the cache keeps a layer's
	// ancestors), and would lists them top first.
	if err := s.store.Delete(id); err != nil {
		return false, nil, fmt.Errorf("snapshot: deleting image %s: %w", id, err)
	}
	var gone []Layer
	for _, l := range layers {
		if refs[l.ID] {
			continue
		}
		if err := s.deleteStoreLayer(l.ID); err != nil {
			return true, gone, fmt.Errorf("snapshot: deleting layer %s of image %s: %w", l.ID, id, err)
		}
		gone = append(gone, l)
	}
	return true, gone, nil
}

type sweepOptions struct {
	candidates     []string // layers to delete unless kept
	forget         string   // a lease journal to remove first (Release)
	allMade        bool     // every layer stepexec made is a candidate
	danglingImages bool     // see PruneOptions
}

// sweep is one collection, under the exclusive GC lock: first the queued
// images and (danglingImages) the nameless ones stepexec made, then the
// candidate layers and those the queued journals list.
func (s *Store) sweep(o sweepOptions) (Collected, error) {
	// Dropping a hold needs no lock; most commands have nothing more to
	// do, and then take none.
	if o.forget != "" {
		if err := os.Remove(o.forget); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Collected{}, fmt.Errorf("snapshot: ending lease: %w", err)
		}
	}
	if len(o.candidates) == 0 && !o.allMade && !o.danglingImages && !s.anyQueued() {
		return Collected{}, nil
	}
	unlock, err := s.lockStore(gcLockName, unix.LOCK_EX)
	if err != nil {
		return Collected{}, err
	}
	defer unlock()
	orphans, err := s.queued(orphansQueue)
	if err != nil {
		return Collected{}, err
	}
	images, err := s.queued(imagesQueue)
	if err != nil {
		return Collected{}, err
	}
	held, err := s.heldClosure()
	if err != nil {
		return Collected{}, err
	}
	refs, err := s.refsClosure()
	if err != nil {
		return Collected{}, err
	}
	c, err := s.sweepImages(images, o.danglingImages, held, refs)
	if err != nil {
		return c, err
	}
	for _, name := range orphans {
		ids, err := readJournal(filepath.Join(s.queue(orphansQueue), name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return c, fmt.Errorf("snapshot: reading queued journal: %w", err)
		}
		o.candidates = append(o.candidates, ids...)
	}
	keep := maps.Clone(held)
	maps.Copy(keep, refs)
	layers, err := s.sweepLayers(o.candidates, o.allMade, keep)
	c.Layers = append(c.Layers, layers...)
	if err != nil {
		return c, err
	}
	// Whatever stayed (a layer with another tool's child, say) is left
	// for prune.
	for _, name := range orphans {
		os.Remove(filepath.Join(s.queue(orphansQueue), name))
	}
	return c, nil
}

// sweepImages deletes the queued images and (dangling) the nameless ones
// stepexec made, unless held keeps their layers. A queued image that got a
// name again (podman tag) is no longer to be deleted.
func (s *Store) sweepImages(queued []string, dangling bool, held, refs map[string]bool) (Collected, error) {
	var c Collected
	drop := func(id string) (bool, error) {
		deleted, layers, err := s.dropImage(id, held, refs)
		if errors.Is(err, storage.ErrImageUsedByContainer) {
			return false, nil // podman's container: its to remove
		}
		if deleted {
			c.Images = append(c.Images, id)
			c.Layers = append(c.Layers, layers...)
		}
		return deleted, err
	}
	for _, id := range queued {
		img, err := s.store.Image(id)
		done := err != nil || len(img.Names) > 0
		if !done {
			if done, err = drop(id); err != nil {
				return c, err
			}
		}
		if done {
			os.Remove(filepath.Join(s.queue(imagesQueue), id))
		}
	}
	if !dangling {
		return c, nil
	}
	imgs, err := s.store.Images()
	if err != nil {
		return c, fmt.Errorf("snapshot: listing images: %w", err)
	}
	for _, img := range imgs {
		if len(img.Names) == 0 && img.Flags[MadeFlag] == true {
			if _, err := drop(img.ID); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// sweepLayers deletes, children first, the candidates (allMade: every
// layer) that stepexec made and that held, the images and the containers
// do not keep.
func (s *Store) sweepLayers(candidates []string, allMade bool, held map[string]bool) ([]Layer, error) {
	g, err := s.loadGraph()
	if err != nil {
		return nil, err
	}
	keep := maps.Clone(held)
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("snapshot: listing images: %w", err)
	}
	for _, img := range imgs {
		g.keep(keep, img.TopLayer)
		for _, m := range img.MappedTopLayers {
			g.keep(keep, m)
		}
	}
	containers, err := s.store.Containers()
	if err != nil {
		return nil, fmt.Errorf("snapshot: listing containers: %w", err)
	}
	for _, c := range containers {
		g.keep(keep, c.LayerID)
	}
	if allMade {
		candidates = slices.Collect(maps.Keys(g.layers))
	}
	doomed := map[string]bool{}
	for _, id := range candidates {
		if l, ok := g.layers[id]; ok && !keep[id] && l.Flags[MadeFlag] == true {
			doomed[id] = true
		}
	}
	return s.deleteLeavesFirst(g, doomed)
}

// deleteLeavesFirst deletes the doomed layers, each once it has no child
// left; those with a child that is not doomed stay, and so do those
// another tool has just started to use.
func (s *Store) deleteLeavesFirst(g *layerGraph, doomed map[string]bool) ([]Layer, error) {
	order := slices.Sorted(maps.Keys(doomed))
	var out []Layer
	var errs []error
	for progress := true; progress; {
		progress = false
		for _, id := range order {
			if !doomed[id] || g.children[id] > 0 {
				continue
			}
			delete(doomed, id)
			l := g.layers[id]
			err := s.deleteStoreLayer(id)
			switch {
			case errors.Is(err, storage.ErrLayerHasChildren), errors.Is(err, storage.ErrLayerUsedByImage), errors.Is(err, storage.ErrLayerUsedByContainer):
				continue // kept by what came meanwhile
			case err != nil:
				errs = append(errs, fmt.Errorf("snapshot: deleting layer %s: %w", id, err))
				continue
			}
			g.children[l.Parent]--
			out = append(out, toLayer(&l))
			progress = true
		}
	}
	return out, errors.Join(errs...)
}

// heldClosure is heldLayers with their ancestors.
func (s *Store) heldClosure() (map[string]bool, error) {
	ids, err := s.heldLayers()
	if err != nil {
		return nil, err
	}
	return s.closure(ids)
}

// refsClosure is the layers the ref files name, with their ancestors.
func (s *Store) refsClosure() (map[string]bool, error) {
	ids, err := s.refLayers()
	if err != nil {
		return nil, err
	}
	return s.closure(ids)
}

func (s *Store) closure(ids []string) (map[string]bool, error) {
	g, err := s.loadGraph()
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, id := range ids {
		g.keep(held, id)
	}
	return held, nil
}

// heldLayers lists the layers live stepexec processes hold, in their lease
// journals and their snapshots' parent files, and those the root sources
// list.
func (s *Store) heldLayers() ([]string, error) {
	snapRoot := filepath.Dir(s.ownerDir)
	owners, err := os.ReadDir(snapRoot)
	if err != nil {
		return nil, fmt.Errorf("snapshot: reading %s: %w", snapRoot, err)
	}
	var ids []string
	for _, o := range owners {
		dir := filepath.Join(snapRoot, o.Name())
		if !o.IsDir() || !ownerAlive(dir) {
			continue
		}
		journals, _ := filepath.Glob(filepath.Join(dir, leasesDir, "*"))
		for _, j := range journals {
			held, err := readJournal(j)
			if err != nil && !errors.Is(err, fs.ErrNotExist) { // gone: released meanwhile
				return nil, fmt.Errorf("snapshot: reading lease journal: %w", err)
			}
			ids = append(ids, held...)
		}
		parents, _ := filepath.Glob(filepath.Join(dir, "*", parentFile))
		for _, p := range parents {
			if raw, err := os.ReadFile(p); err == nil && len(raw) > 0 {
				ids = append(ids, string(raw))
			}
		}
	}
	return ids, nil
}

// refsDir is <base>/refs: persistent GC roots of any process (see RefsDir).
const refsDir = "refs"

// RefsDir returns <graphroot>/stepexec/refs/NAME, created if missing. Every
// file in it (a build cache entry, say) holding a JSON object with a
// "layer" field is a GC root of every process using the store, live or
// not: that layer and its ancestors are kept. Write such files atomically
// (a temporary file renamed into place) while the layer is held (by a
// Lease), so that no collection runs between the layer losing its hold and
// gaining the ref.
func (s *Store) RefsDir(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("snapshot: invalid refs name %q", name)
	}
	dir := filepath.Join(s.base, refsDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("snapshot: creating %s: %w", dir, err)
	}
	return dir, nil
}

// refLayers lists the layers the ref files name.
func (s *Store) refLayers() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(s.base, refsDir, "*", "*"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot: reading ref %s: %w", f, err)
		}
		var ref struct {
			Layer string `json:"layer"`
		}
		if json.Unmarshal(raw, &ref) == nil && ref.Layer != "" {
			ids = append(ids, ref.Layer)
		}
	}
	return ids, nil
}

// layerGraph is the store's layers at one moment.
type layerGraph struct {
	layers   map[string]storage.Layer
	children map[string]int
}

func (s *Store) loadGraph() (*layerGraph, error) {
	ls, err := s.store.Layers()
	if err != nil {
		return nil, fmt.Errorf("snapshot: listing layers of %s: %w", s.graphRoot, err)
	}
	g := &layerGraph{layers: make(map[string]storage.Layer, len(ls)), children: map[string]int{}}
	for _, l := range ls {
		g.layers[l.ID] = l
		g.children[l.Parent]++
	}
	return g, nil
}

// keep adds id and its ancestors to set.
func (g *layerGraph) keep(set map[string]bool, id string) {
	for id != "" && !set[id] {
		set[id] = true
		id = g.layers[id].Parent
	}
}
