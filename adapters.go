package stepexec

import (
	"context"
	"fmt"

	"github.com/moby/patternmatcher"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/buildcontext"
	"github.com/stepexec/stepexec/internal/engine"
	"github.com/stepexec/stepexec/snapshot"
)

// engineDeps connects the engine to the builder's store, runtime and
// images; lease holds what the build reads and makes.
func (b *Builder) engineDeps(lease *snapshot.Lease, pull basePuller) (engine.Deps, error) {
	cache, err := b.store.PersistentDir("cache")
	if err != nil {
		return engine.Deps{}, err
	}
	tmp, err := b.store.ScratchDir()
	if err != nil {
		return engine.Deps{}, err
	}
	idx, err := b.cacheIndex()
	if err != nil {
		return engine.Deps{}, err
	}
	return engine.Deps{Snaps: b.store, Commit: []snapshot.CommitOpt{snapshot.WithLease(lease)}, Runner: b.runtime,
		Images: storeImages{s: b.images, lease: lease, pull: pull}, CacheDir: cache, TempDir: tmp,
		Cache: idx, HoldLayer: b.holdLayer(lease)}, nil
}

// holdLayer gives the engine a cached layer: still in the store (another
// tool may have deleted it), on the expected parent, and held by the
// build's lease from here on.
func (b *Builder) holdLayer(lease *snapshot.Lease) func(context.Context, string, string) (image.Layer, error) {
	return func(_ context.Context, id, parent string) (image.Layer, error) {
		var l snapshot.Layer
		_, err := lease.Hold(func() (string, error) {
			var err error
			if l, err = b.store.Layer(id); err == nil && l.Parent != parent {
				err = fmt.Errorf("cached layer %s is on layer %q, not %q", id, l.Parent, parent)
			}
			return l.ID, err
		})
		return image.Layer{ID: l.ID, DiffID: l.DiffID, Size: l.Size}, err
	}
}

// storeImages is the engine's view of the image store: an image found is
// held by the build's lease from the lookup on, so an rmi meanwhile only
// untags it; one the store lacks is pulled when the policy says so.
type storeImages struct {
	s     *image.Store
	lease *snapshot.Lease
	pull  basePuller
}

func (a storeImages) Resolve(ctx context.Context, ref string) (engine.Base, error) {
	img, name, err := image.Image{}, "", fmt.Errorf("%w: %s", image.ErrNotFound, ref)
	if a.pull.checksStore(ref) {
		img, name, err = a.local(ref)
	}
	if a.pull.wants(ref, err) {
		img, name, err = a.pull.pull(ctx, ref, a.lease)
	}
	if err != nil {
		return engine.Base{}, err
	}
	layers, err := a.s.Layers(img)
	if err != nil {
		return engine.Base{}, err
	}
	return resolvedBase(img, name, layers), nil
}

// local looks ref up in the store and holds what it finds.
func (a storeImages) local(ref string) (img image.Image, name string, err error) {
	_, err = a.lease.Hold(func() (string, error) {
		var err error
		img, name, err = localImage(a.s, ref)
		return img.TopLayer, err
	})
	return img, name, err
}

// contextSource is the engine's view of an opened build context.
type contextSource struct{ c *buildcontext.Context }

func (c contextSource) Dir() string                            { return c.c.Dir }
func (c contextSource) Ignore() *patternmatcher.PatternMatcher { return c.c.Ignore() }
