// Package native is a snapshot.Snapshotter that needs no mounts: layers
// are OCI layer tars in a directory, and a snapshot is a plain copy of
// its parent's tree, made by applying the tars of the parent's chain one
// after the other. It is the fallback for hosts without usable overlayfs
// (containerd's "native" snapshotter, buildah's vfs driver) and the layer
// store the engine's unit tests run on. Package snapshottest is the suite
// it passes with the overlay Store.
//
// Layout under the root given to Open:
//
//	lock                          flock held by the one process using the root
//	layers/<id>/layer.tar         the layer's uncompressed tar: Diff serves it
//	layers/<id>/layer.json        ID, parent, DiffID, size, names
//	snapshots/<key>/tree          an active snapshot's or view's files (Snapshot.Dir)
//
// # Changes without an upper directory
//
// Commit must find what a step changed in a full copy. Prepare records,
// after copying, every entry's identity (inode number and, where the
// filesystem keeps one, birth time) and its ctime, then waits until the
// filesystem's clock has moved past the latest ctime recorded: any later
// change of an entry (content, mode, owner, xattrs, times, links) gives
// it a new ctime, and any replacement a new identity. Commit then walks
// the tree: an entry is in the layer when it is new, replaced or has a
// new ctime, with the directories above it; a recorded path that is gone
// is a whiteout in its directory; a directory that replaced one of the
// parent's is opaque, and all below it is in the layer. This is what an
// overlay upper directory holds for the same changes, and
// snapshot.WriteTreeTar writes it with the overlay Store's tar format, so
// equal trees give equal DiffIDs, and equal layer IDs (snapshot.LayerID),
// on both backends.
//
// Known differences from overlay: a file opened for writing but not
// written is not in the layer (overlay copies it up), and changing one
// name of a file with several hard links changes all of them, as on any
// plain filesystem (overlay copies up only the name written to, breaking
// the link). Views are private copies: writing to them is not refused, it
// only never reaches a layer.
//
// # Limits
//
// Every Prepare and View copies the whole tree and Commit walks it: fine
// for tests and small images, slow for large ones. There is no garbage
// collection: layers stay until the root is removed (CommitOptions.Lease
// is ignored). ForStep changes nothing: nothing is idmapped, so as real
// root a RUN step's user namespace would see the files with shifted ids;
// a build on this backend must run its steps without one, or give the
// tree the step's ids. One process at a time may use a root: Open locks
// it and removes the snapshots a killed process left.
//
// It runs as any user. As root (or root of a user namespace) files keep
// their owners; as a normal user only trees whose files that user owns
// and may read and write can be copied (no read-only directories holding
// files, no other users' files), and device nodes, which it cannot
// create, are left out of copies, as they are in a user namespace.
package native
