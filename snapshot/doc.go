// Package snapshot owns stepexec's layer store (go.podman.io/storage with the
// overlay driver) and the writable snapshots on which RUN steps run.
//
// Terms, in the style of containerd's snapshots.Snapshotter:
//
//   - A layer is an immutable committed change set in the store, identified
//     by ID, with a parent layer ("" for a base layer), a DiffID (the sha256
//     of its uncompressed tar) and an uncompressed size. Layer IDs follow
//     containers/image's convention so that podman deduplicates against them:
//     a base layer's ID is its DiffID's hex; a child's is
//     sha256hex(parentID + "+" + diffID.String()).
//   - A snapshot is a writable overlayfs view on top of a parent layer (""
//     = on an empty tree), identified by a key the caller chooses. It lives
//     until it is committed (turned into a layer) or removed. Its merged
//     directory is the rootfs a step runs on.
//
// Snapshots are not containers/storage layers: each one is a directory
// <graphroot>/stepexec/snapshots/<owner>/<key>/{upper,work,merged} that this
// package mounts itself, with the parent chain's <graphroot>/overlay/<id>/diff
// directories as lower layers. <owner> is one per open Store, and holds a
// flock on <owner>/lock for the Store's lifetime; Open deletes the owner
// directories whose lock is free, i.e. left behind by a killed process (whose
// mounts vanished with its private mount namespace).
//
// Commit diffs the upper directory itself (WriteLayerTar), spools the tar in
// the snapshot directory while hashing it, and stores it with PutLayer, which
// records the DiffID, size and tar-split so that podman and Diff can read the
// layer back byte for byte.
//
// Open must run as uid 0: real root, or root of the outer user namespace the
// stepexec binary re-executes into (go.podman.io/storage/pkg/unshare). Any
// main or test main using this package must begin with
// `if reexec.Init() { return }` (go.podman.io/storage/pkg/reexec).
package snapshot
