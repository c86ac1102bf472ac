package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// Snapshotter makes the trees build steps work on and turns them into
// layers. Two backends implement it: the overlay Store of this package
// (layers in containers/storage, snapshots as overlay mounts) and
// snapshot/native (layers as tar files, snapshots as plain copies, no
// mounts). Package snapshottest is the suite both pass.
//
// # Terms
//
//   - A layer is an immutable change set, named by its ID, with a parent
//     layer ("" for a base layer) and a DiffID, the sha256 of its
//     uncompressed OCI layer tar. IDs follow containers/image's
//     convention (LayerID), so equal changes on equal parents get equal
//     IDs in every backend, and podman dedups against them.
//   - A parent names the layer a snapshot stands on: its ID ("" = an
//     empty tree). Its tree, the flattened chain from the base layer up,
//     is what the snapshot shows at first.
//   - A key names an active snapshot or view, chosen by the caller: one
//     path element (no "/"), at most 200 bytes, unique among the active
//     ones of a Snapshotter. It is freed by Commit and Remove.
//   - A snapshot (Prepare) is a writable tree in a directory (Dir) on top
//     of its parent; a view (View) is a read-only one.
//
// # Lifecycle
//
// Prepare(key, parent) makes a snapshot of parent's tree under key. The
// caller changes files in Snapshot.Dir, then either commits it, which
// computes the layer of its changes against the parent (files added or
// changed, deleted ones as ".wh.NAME" whiteouts, a replaced directory as
// opaque), stores it and removes the snapshot, or removes it, which drops
// the changes. Commit removes the snapshot on failure too: either way the
// key is free again, and a failed Commit stores nothing.
//
// View(key, parent) shows parent's tree for reading (COPY --from, RUN
// --mount from=). Its files must not be changed: the overlay backend
// refuses writes (EROFS), the native one lets them land in a private copy
// that no layer ever sees. A view cannot be committed; Remove drops it.
//
// # A build step
//
//	snap, _ := s.Prepare(ctx, "step-3", top, snapshot.ForStep())
//	run(snap.Dir)                                   // a RUN step changes files
//	c, _ := s.Commit(ctx, "step-3", snapshot.WithLease(lease))
//	if !c.Empty { top = c.Layer.ID }                // the next step's parent
//
// Close removes every snapshot and view still active; a Snapshotter is
// then unusable, and closing it again does nothing. Every method is safe
// for concurrent use.
type Snapshotter interface {
	// Prepare makes a writable snapshot named key of the tree of the
	// layer parent ("" = an empty tree).
	Prepare(ctx context.Context, key, parent string, opts ...PrepareOpt) (*Snapshot, error)
	// View makes a read-only view named key of the tree of the layer
	// parent ("" = an empty directory). ForStep: a RUN step sees it
	// through a bind mount (as real root the overlay Store idmaps its
	// layers and sets Snapshot.IDMapped).
	View(ctx context.Context, key, parent string, opts ...PrepareOpt) (*Snapshot, error)
	// Commit stores the changes of the snapshot key as a layer on its
	// parent and removes the snapshot, whether it succeeds or not. A
	// snapshot without changes gives Committed.Empty and no layer.
	Commit(ctx context.Context, key string, opts ...CommitOpt) (Committed, error)
	// Remove drops the snapshot or view key and its changes; an unknown
	// key is not an error. It cleans up even when ctx is done.
	Remove(ctx context.Context, key string) error
	// Diff returns the uncompressed tar of a committed layer, whose
	// digest is its DiffID (image.LayerReader); the caller closes it.
	Diff(ctx context.Context, layerID string) (io.ReadCloser, error)
	// Close removes the active snapshots and views and releases the
	// backend; calling it again is a no-op.
	Close() error
}

// Snapshot is an active snapshot or view; Dir is its tree.
type Snapshot struct {
	Key    string
	Parent string // parent layer ID, "" if none
	Dir    string // the tree: the rootfs to run a step on, or to read
	// IDMapped: Dir shows the files with the ids of the steps' user
	// namespace (the overlay Store's ForStep snapshots as real root, see
	// userns.Shift): a file stored as uid N is seen as root's N-th
	// subordinate id, and this process (host uid 0) can read but not
	// create files there.
	IDMapped bool
}

// Committed is the outcome of Commit.
type Committed struct {
	Layer Layer // zero value when Empty
	Empty bool  // the snapshot held no changes: no layer was made
	// Reused: an identical layer (same parent, same DiffID) was stored
	// already, and Layer is that one: this Commit made nothing.
	Reused bool
	Files  int   // entries in the layer tar (files, dirs, links, whiteouts)
	Bytes  int64 // bytes of regular-file content in the layer
}

// PrepareOptions are what PrepareOpts set.
type PrepareOptions struct {
	// ForStep: a RUN step (package runtime) runs on the snapshot. The
	// overlay Store then idmaps its layers as real root (see ForStep).
	ForStep bool
}

// PrepareOpt is an option of Prepare.
type PrepareOpt func(*PrepareOptions)

// ForStep marks a snapshot a RUN step runs on. As real root the overlay
// Store idmaps its layers to the steps' subordinate ids
// (Snapshot.IDMapped), so the step's root owns what uid 0 owns on disk
// and what it writes is stored with the image's ids; only a kernel
// without idmapped overlay layers gets the plain view (steps then run as
// host ids too: userns.StepShift warned). Rootless, and for the native
// backend, it changes nothing. Without it, the files are seen with the
// ids they are stored with, for this process to write (an import,
// WORKDIR's mkdir).
func ForStep() PrepareOpt { return func(o *PrepareOptions) { o.ForStep = true } }

// PrepareOptionsOf applies opts (for backends).
func PrepareOptionsOf(opts []PrepareOpt) PrepareOptions {
	var o PrepareOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// CommitOptions are what CommitOpts set.
type CommitOptions struct {
	Names []string // optional layer names
	// Lease holds the layer (made or found) until an image refers to it;
	// nil means a lease of the Store's own, released by Close. The
	// native backend collects no garbage and ignores it.
	Lease *Lease
	// KeepEmpty commits a layer even when the snapshot changed nothing (an
	// empty tar), as BuildKit does for every RUN, COPY and WORKDIR.
	KeepEmpty bool
}

// CommitOpt is an option of Commit.
type CommitOpt func(*CommitOptions)

// WithLease commits under lease (see CommitOptions.Lease).
func WithLease(l *Lease) CommitOpt { return func(o *CommitOptions) { o.Lease = l } }

// KeepEmpty makes Commit store an empty layer for a snapshot that changed
// nothing (see CommitOptions.KeepEmpty).
func KeepEmpty() CommitOpt { return func(o *CommitOptions) { o.KeepEmpty = true } }

// WithNames gives the layer names besides its ID.
func WithNames(names ...string) CommitOpt {
	return func(o *CommitOptions) { o.Names = append(o.Names, names...) }
}

// CommitOptionsOf applies opts (for backends).
func CommitOptionsOf(opts []CommitOpt) CommitOptions {
	var o CommitOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// LayerID is containers/image's layer ID for diffID on parent, which lets
// podman and stepexec share layers: a base layer's is its DiffID's hex, a
// child's sha256hex(parentID + "+" + diffID's hex) (go.podman.io/image's
// storage destination, layerID; podman 4.3 computes the same).
func LayerID(parent string, diffID digest.Digest) string {
	if parent == "" {
		return diffID.Encoded()
	}
	sum := sha256.Sum256([]byte(parent + "+" + diffID.Encoded()))
	return hex.EncodeToString(sum[:])
}
