// Package snapshot owns stepexec's layer store (go.podman.io/storage with the
// overlay driver) and the writable snapshots on which RUN steps run.
//
// Snapshotter (snapshotter.go) is the interface builds use, with its terms
// (layer, parent, key, snapshot, view) and lifecycle defined in the style
// of containerd's snapshots.Snapshotter. Store, this package's backend,
// implements it on overlayfs; snapshot/native implements it with plain
// copies, for hosts without usable overlay and for the engine's tests;
// snapshot/snapshottest is the suite both pass. In Store's terms:
//
//   - A layer is a containers/storage layer, identified by ID (or a
//     name), with a parent layer ("" for a base layer), a DiffID (the
//     sha256 of its uncompressed tar) and an uncompressed size. Layer IDs
//     follow containers/image's convention (LayerID) so that podman
//     deduplicates against them.
//   - A snapshot is a writable overlayfs view on top of a parent layer (""
//     = on an empty tree), identified by a key the caller chooses. It lives
//     until it is committed (turned into a layer) or removed. Its merged
//     directory is the rootfs a step runs on. A view is a read-only one.
//
// Snapshots are not containers/storage layers: each one is a directory
// <graphroot>/stepexec/snapshots/<owner>/<key>/{upper,work,merged} that this
// package mounts itself, with the parent chain's <graphroot>/overlay/<id>/diff
// directories as lower layers. <owner> is one per open Store, and holds a
// flock on <owner>/lock for the Store's lifetime; Open deletes the owner
// directories whose lock is free, i.e. left behind by a killed process (whose
// mounts vanished with its private mount namespace).
//
// As real root, a snapshot a RUN step runs on (Prepare with ForStep)
// shows its files shifted to the ids of the step's user namespace
// (userns.Shift: root's subordinate ids): the overlay's lower, upper and
// work directories are given to overlayfs as fds (Linux 6.13+) inside two
// idmapped clones of <graphroot>/overlay and of the owner directory, made
// once per Store on the first ForStep Prepare and attached nowhere, so no
// mount but the overlay itself ever appears and nothing survives the
// process. Files keep their
// image ids on disk: what the step's root writes is stored as uid 0, and
// overlay's whiteouts and trusted.overlay.opaque xattrs are unchanged.
// Prepare's snapshots are not idmapped: this process (an import, WORKDIR)
// writes in them with its own ids. Rootless, both are the same. ViewStep
// is the read-only View on the same idmapped layers, for a step to bind
// (RUN --mount from=): an overlay cannot be idmapped once mounted.
//
// As real root nothing of a store is open to other users: stepexec's
// directories, owner and snapshot directories are 0700 (an upper dir holds
// what the step wrote, setuid-root files included), and every overlay
// lives in the process's private mount namespace (userns.Enter), in no
// other process's mount table. Since libcontainer resolves a step's rootfs
// path as the step's root, a host uid with no right to those directories,
// step snapshots are mounted in a tmpfs of the Store's own, 0711, mounted
// on <stepRootsBase>/<pid>-<random> (/run/stepexec/...) in that namespace
// only: everywhere else that is an empty 0700 directory, which the next
// Open removes once its process is gone. Open also takes back the o+x that
// stepexec versions before this design gave others on the store and its
// ancestors (see repairTraversal).
//
// Every snapshot's overlay is mounted nodev: device nodes in layers (a base
// image's, created for real as root) open nothing.
//
// Commit unmounts the snapshot and writes its upper directory as a layer tar
// (WriteLayerTar) through tar-split's disassembler while hashing it: this
// gives the DiffID, the size and the tar-split metadata, but the tar itself
// is not kept. The upper directory then takes the place (renamed, not
// copied) of the overlay driver's staging directory and the layer is
// created from it with the store's staged-layer API (PrepareStagedLayer +
// ApplyStagedLayer, experimental in go.podman.io/storage), which records
// DiffID, size and tar-split so that podman and Diff read the layer back
// byte for byte. An upper directory is already a layer in the driver's
// format (0/0 device whiteouts, <ns>.overlay.opaque); overlay's other
// bookkeeping xattrs are stripped. When the rename would cross mounts,
// Commit falls back to spooling the tar and PutLayer (a copy).
//
// Durability is containers/storage's own: it fdatasyncs layers.json and
// mountpoints.json on each of its three metadata writes per layer and does
// not sync layer contents; stepexec does not turn those syncs off.
//
// Sharp edge of the staged API: containers/storage before v1.54 (podman 4.3
// on Debian 12) deletes <graphroot>/overlay/staging whenever it opens the
// store. A podman command started during the few milliseconds between
// PrepareStagedLayer and ApplyStagedLayer makes that Commit fail (the
// step's changes are lost, no layer is recorded) or, if its deletion races
// the final rename, can leave the new layer missing files. All the
// expensive work (reading and hashing the files) happens before that window
// opens, so it lasts only a few renames and metadata writes.
//
// Garbage collection (gc.go) has one rule: a layer is deleted when
// stepexec made it (the MadeFlag flag, set when Commit creates it) and no
// root keeps it. Roots keep a layer and its ancestors: every image and
// container in the store, whatever tool made it; the Leases and snapshots
// of live stepexec processes (a build holds its base from the moment it
// looks it up, and every layer it commits from before it is made); and the
// ref files under <graphroot>/stepexec/refs/ (RefsDir), the build cache's
// entries, which keep their layers even without an image (rmi deletes the
// image and only the layers no ref keeps). Layers of other tools are never
// deleted. A lease's journal (<owner>/leases/<id>) outlives a killed
// process: the next Open moves it to <graphroot>/stepexec/gc/orphans and
// deletes what it lists that nothing keeps. Prune considers every layer.
// DeleteImage (rmi) of an image whose layers a live lease or snapshot
// holds only removes its names and queues it (gc/released) until they are
// released. Deletions take <graphroot>/stepexec/gc.lock exclusively;
// holds are recorded under it shared, right after the lookup they follow.
//
// Open must run as uid 0: real root, or root of the outer user namespace the
// stepexec binary re-executes into (go.podman.io/storage/pkg/unshare). As
// real root a ForStep Prepare also needs the private mount namespace userns.Enter
// makes, and refuses to mount in a shared one. Any
// main or test main using this package must begin with
// `if reexec.Init() { return }` (go.podman.io/storage/pkg/reexec).
package snapshot
