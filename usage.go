package stepexec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/stepexec/stepexec/image"
	buildcache "github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/snapshot"
)

// PruneOptions says what Prune removes.
type PruneOptions struct {
	// All: every build cache entry (not only those whose layers no image
	// uses), and the images stepexec built that have no name left, with
	// the layers only they use.
	All bool
	// Until, when set, spares the cache entries used within that long.
	Until time.Duration
}

// Pruned is what Prune removed.
type Pruned struct {
	snapshot.Collected
	CacheEntries []string // the keys of the removed build cache entries
}

// Prune removes build cache entries (those whose layers no image uses;
// with All every one; with Until only those unused for that long), then
// the layers stepexec made that no image, container, running build or
// remaining cache entry uses (leftovers of killed builds too), and with
// All the nameless images stepexec built. Other tools' layers and images
// stay; so does anything a running build stands on.
func (b *Builder) Prune(opts PruneOptions) (Pruned, error) {
	var out Pruned
	idx, err := b.cacheIndex()
	if err != nil {
		return out, err
	}
	used, err := b.imageLayers()
	if err != nil {
		return out, err
	}
	cutoff := time.Now().Add(-opts.Until)
	var errs []error
	err = idx.Walk(func(k buildcache.Key, r buildcache.Record) error {
		if opts.Until > 0 && r.Used.After(cutoff) {
			return nil
		}
		if !opts.All && used[r.Layer] {
			return nil // costs no space: an image keeps the layer anyway
		}
		if err := idx.Delete(k); err != nil {
			errs = append(errs, err)
			return nil
		}
		out.CacheEntries = append(out.CacheEntries, string(k))
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	c, err := b.store.Prune(snapshot.PruneOptions{DanglingImages: opts.All})
	out.Collected = c
	return out, errors.Join(append(errs, err)...)
}

// cacheIndex opens the store's build cache: its records are refs (GC
// roots), its locks live in the run root.
func (b *Builder) cacheIndex() (*buildcache.Index, error) {
	dir, err := b.store.RefsDir("cache")
	if err != nil {
		return nil, err
	}
	locks, err := b.store.RunDir("cache-locks")
	if err != nil {
		return nil, err
	}
	return buildcache.Open(dir, locks), nil
}

// imageLayers is the set of layer IDs the store's images use.
func (b *Builder) imageLayers() (map[string]bool, error) {
	imgs, err := b.images.List()
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, img := range imgs {
		ls, err := b.images.Layers(img)
		if err != nil {
			continue
		}
		for _, l := range ls {
			used[l.ID] = true
		}
	}
	return used, nil
}

// Usage is the space a store takes, as `docker system df` shows it.
type Usage struct {
	Images, ImagesActive int   // the stored images, and those with a name
	ImagesSize           int64 // the layers images use, each counted once
	CacheEntries         int   // the build cache's records
	CacheSize            int64 // the layers only cache entries keep
	CacheMounts          int   // RUN --mount=type=cache directories
	CacheMountsSize      int64 // the bytes of their files
}

// DiskUsage measures the store.
func (b *Builder) DiskUsage() (Usage, error) {
	var u Usage
	imgs, err := b.images.List()
	if err != nil {
		return u, err
	}
	counted := map[string]bool{}
	for _, img := range imgs {
		u.Images++
		if len(img.Names) > 0 {
			u.ImagesActive++
		}
		ls, _ := b.images.Layers(img)
		for _, l := range ls {
			if !counted[l.ID] {
				counted[l.ID] = true
				u.ImagesSize += l.Size
			}
		}
	}
	idx, err := b.cacheIndex()
	if err != nil {
		return u, err
	}
	err = idx.Walk(func(_ buildcache.Key, r buildcache.Record) error {
		u.CacheEntries++
		if !counted[r.Layer] {
			counted[r.Layer] = true
			u.CacheSize += r.Size
		}
		return nil
	})
	if err != nil {
		return u, err
	}
	dir, err := b.store.PersistentDir("cache")
	if err != nil {
		return u, err
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			u.CacheMounts++
			u.CacheMountsSize += dirSize(filepath.Join(dir, e.Name()))
		}
	}
	return u, nil
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// HistoryEntry is one step of an image's history, with its layer.
type HistoryEntry struct {
	Created   *time.Time // when the step ran
	CreatedBy string     // the instruction
	Comment   string
	Empty     bool  // the step made no layer
	Size      int64 // its layer's uncompressed size
}

// History returns an image's history, newest first, as `docker history`.
func (b *Builder) History(ref string) ([]HistoryEntry, error) {
	img, err := b.images.Get(ref)
	if err != nil {
		return nil, err
	}
	layers, err := b.images.Layers(img)
	if err != nil {
		return nil, err
	}
	return historyOf(img, layers)
}

func historyOf(img image.Image, layers []image.Layer) ([]HistoryEntry, error) {
	var out []HistoryEntry
	li := 0
	for _, h := range img.Config.History {
		e := HistoryEntry{Created: h.Created, CreatedBy: h.CreatedBy, Comment: h.Comment, Empty: h.EmptyLayer}
		if !h.EmptyLayer {
			if li >= len(layers) {
				return nil, fmt.Errorf("image %s: its history names more layers than it has", img.ShortID())
			}
			e.Size = layers[li].Size
			li++
		}
		out = append(out, e)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
