package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// Layer is a committed, immutable layer in the store.
type Layer struct {
	ID     string
	Parent string
	DiffID digest.Digest // sha256 of the uncompressed tar
	Size   int64         // uncompressed tar size
}

func toLayer(l *storage.Layer) Layer {
	return Layer{ID: l.ID, Parent: l.Parent, DiffID: l.UncompressedDigest, Size: l.UncompressedSize}
}

// Layer returns the layer with the given ID (or name).
func (s *Store) Layer(id string) (Layer, error) {
	l, err := s.store.Layer(id)
	if err != nil {
		return Layer{}, fmt.Errorf("snapshot: layer %s: %w", id, err)
	}
	return toLayer(l), nil
}

// Layers lists every layer in the store, including those other tools made.
func (s *Store) Layers() ([]Layer, error) {
	ls, err := s.store.Layers()
	if err != nil {
		return nil, fmt.Errorf("snapshot: listing layers of %s: %w", s.graphRoot, err)
	}
	out := make([]Layer, 0, len(ls))
	for i := range ls {
		out = append(out, toLayer(&ls[i]))
	}
	return out, nil
}

// deleteStoreLayer deletes layer id from the store, retrying ENOSPC for a
// few seconds. Deleting needs a little space (a temp dir, a rewrite of
// layers.json), and on a full disk the space of the step that just ended
// comes back a moment after its files are removed, not at once: the
// overlay the step ran on holds them until the kernel has released it
// (measured: up to 1.4 s on a loaded 2-core machine). Without the retry a
// failed build's layers would stay behind.
func (s *Store) deleteStoreLayer(id string) error {
	deadline := time.Now().Add(deleteRetryFor)
	for {
		err := s.store.DeleteLayer(id)
		if err == nil || !errors.Is(err, unix.ENOSPC) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const deleteRetryFor = 5 * time.Second

// saveLayerRecords rewrites the store's layer records from what it holds
// in memory, retrying ENOSPC as deleteStoreLayer does. When the store
// fails to create a layer on a full disk it forgets the layer but may fail
// to save that: layers.json keeps it, marked incomplete, until some process
// next loads the store. Saving again once the space is back drops it now.
// Any layer's record serves to make the store save (its metadata is
// written back unchanged); there is none to use when parent is "".
func (s *Store) saveLayerRecords(parent string) {
	if parent == "" {
		return
	}
	deadline := time.Now().Add(deleteRetryFor)
	for {
		l, err := s.store.Layer(parent)
		if err != nil {
			return
		}
		err = s.store.SetMetadata(parent, l.Metadata)
		if err == nil || !errors.Is(err, unix.ENOSPC) || time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// madeLayer marks a layer as stepexec's: garbage once nothing keeps it.
func madeLayer() *storage.LayerOptions {
	return &storage.LayerOptions{Flags: map[string]any{MadeFlag: true}}
}

// Diff returns the uncompressed tar of a committed layer (for OCI export);
// the caller closes it. The stream holds the store-wide layer lock until
// closed: do not write to the store (Commit, PutLayer) before closing it.
func (s *Store) Diff(ctx context.Context, id string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	uncompressed := archive.Uncompressed
	rc, err := s.store.Diff("", id, &storage.DiffOptions{Compression: &uncompressed})
	if err != nil {
		return nil, fmt.Errorf("snapshot: diff of layer %s: %w", id, err)
	}
	return rc, nil
}
