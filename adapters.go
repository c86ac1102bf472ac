package stepexec

import (
	"context"
	"sync"

	"github.com/moby/patternmatcher"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/buildcontext"
	"github.com/stepexec/stepexec/internal/engine"
	"github.com/stepexec/stepexec/snapshot"
)

// engineDeps connects the engine to the builder's store, runtime and
// images, with a tracker of the layers this build adds.
func (b *Builder) engineDeps() (engine.Deps, *layerTracker, error) {
	cache, err := b.store.PersistentDir("cache")
	if err != nil {
		return engine.Deps{}, nil, err
	}
	tmp, err := b.store.ScratchDir()
	if err != nil {
		return engine.Deps{}, nil, err
	}
	layers, err := b.store.Layers()
	if err != nil {
		return engine.Deps{}, nil, err
	}
	t := &layerTracker{b: b, existed: map[string]bool{}}
	for _, l := range layers {
		t.existed[l.ID] = true
	}
	return engine.Deps{Snaps: &storeSnaps{s: b.store, t: t}, Runner: b.runtime, Images: storeImages{b.images},
		CacheDir: cache, TempDir: tmp}, t, nil
}

// storeSnaps is the engine's view of the snapshot store.
type storeSnaps struct {
	s *snapshot.Store
	t *layerTracker
}

func (a *storeSnaps) Prepare(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error) {
	if forStep {
		return a.s.PrepareStep(ctx, key, parent)
	}
	return a.s.Prepare(ctx, key, parent)
}

func (a *storeSnaps) View(ctx context.Context, key, parent string) (*snapshot.Snapshot, error) {
	return a.s.View(ctx, key, parent)
}

func (a *storeSnaps) Commit(ctx context.Context, key string) (snapshot.Committed, error) {
	c, err := a.s.Commit(ctx, key, snapshot.CommitOptions{})
	if err == nil && !c.Empty {
		a.t.add(c)
	}
	return c, err
}

func (a *storeSnaps) Remove(_ context.Context, key string) error { return a.s.Remove(key) }

// layerTracker remembers the layers a build made, so that a failed build
// can remove those nothing else took up.
type layerTracker struct {
	b       *Builder
	mu      sync.Mutex
	existed map[string]bool
	made    []string
}

func (t *layerTracker) add(c snapshot.Committed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !c.Reused && !t.existed[c.Layer.ID] {
		t.made = append(t.made, c.Layer.ID)
	}
	t.existed[c.Layer.ID] = true
}

// dropMade deletes, newest first, the layers the build made, unless an
// image or a live snapshot took them up meanwhile.
func (t *layerTracker) dropMade() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.made) - 1; i >= 0; i-- {
		if used, err := t.b.images.InUse(t.made[i]); err != nil || used {
			continue
		}
		_ = t.b.store.DeleteLayer(t.made[i])
	}
	t.made = nil
}

// storeImages is the engine's view of the image store.
type storeImages struct{ s *image.Store }

func (a storeImages) Resolve(_ context.Context, ref string) (engine.Base, error) {
	img, name, err := a.s.Resolve(ref)
	if err != nil {
		return engine.Base{}, err
	}
	layers, err := a.s.Layers(img)
	if err != nil {
		return engine.Base{}, err
	}
	return resolvedBase(img, name, layers), nil
}

// contextSource is the engine's view of an opened build context.
type contextSource struct{ c *buildcontext.Context }

func (c contextSource) Dir() string                            { return c.c.Dir }
func (c contextSource) Ignore() *patternmatcher.PatternMatcher { return c.c.Ignore() }
