package stepexec

import (
	"context"

	"github.com/moby/patternmatcher"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/buildcontext"
	"github.com/stepexec/stepexec/internal/engine"
	"github.com/stepexec/stepexec/snapshot"
)

// engineDeps connects the engine to the builder's store, runtime and
// images; lease holds what the build reads and makes.
func (b *Builder) engineDeps(lease *snapshot.Lease) (engine.Deps, error) {
	cache, err := b.store.PersistentDir("cache")
	if err != nil {
		return engine.Deps{}, err
	}
	tmp, err := b.store.ScratchDir()
	if err != nil {
		return engine.Deps{}, err
	}
	return engine.Deps{Snaps: storeSnaps{s: b.store, lease: lease}, Runner: b.runtime,
		Images: storeImages{s: b.images, lease: lease}, CacheDir: cache, TempDir: tmp}, nil
}

// storeSnaps is the engine's view of the snapshot store: commits go
// under the build's lease.
type storeSnaps struct {
	s     *snapshot.Store
	lease *snapshot.Lease
}

func (a storeSnaps) Prepare(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error) {
	if forStep {
		return a.s.PrepareStep(ctx, key, parent)
	}
	return a.s.Prepare(ctx, key, parent)
}

func (a storeSnaps) View(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error) {
	if forStep {
		return a.s.ViewStep(ctx, key, parent)
	}
	return a.s.View(ctx, key, parent)
}

func (a storeSnaps) Commit(ctx context.Context, key string) (snapshot.Committed, error) {
	return a.s.Commit(ctx, key, snapshot.CommitOptions{Lease: a.lease, KeepEmpty: true})
}

func (a storeSnaps) Remove(_ context.Context, key string) error { return a.s.Remove(key) }

// storeImages is the engine's view of the image store: an image found is
// held by the build's lease from the lookup on, so an rmi meanwhile only
// untags it.
type storeImages struct {
	s     *image.Store
	lease *snapshot.Lease
}

func (a storeImages) Resolve(_ context.Context, ref string) (engine.Base, error) {
	var img image.Image
	var name string
	_, err := a.lease.Hold(func() (string, error) {
		var err error
		img, name, err = a.s.Resolve(ref)
		return img.TopLayer, err
	})
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
