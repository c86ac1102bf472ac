package runtime

import "io/fs"

// Mount is an extra mount of a step (RUN --mount), at Target in its rootfs.
// Targets are absolute; a missing one is created for the step and removed
// after it (see stubs.go), a target under a symlink of the image is
// resolved inside the rootfs, and mounts are made in the order of their
// targets (so /a comes before /a/b; of two with the same target the last
// wins), as BuildKit does.
type Mount struct {
	Target   string // absolute path in the step's root filesystem
	Source   MountSource
	ReadOnly bool
}

// MountSource is one of Bind, Tmpfs or Secret.
type MountSource interface{ isMountSource() }

// Bind mounts a host directory or file (rbind, private, nodev). With
// DiscardWrites (and not ReadOnly) the step may write to it but its writes
// go to a throwaway layer, dropped after the step (RUN
// --mount=type=bind,rw): an overlay on a directory, a copy of a file.
//
// As real root the mount is idmapped like the rootfs, so the step sees
// the owners stored on disk (uid 0 is the step's root), unless IDMapped
// says Path already shows the step's ids (a snapshot.Snapshot made for a
// step, whose IDMapped is set: an overlay, which cannot be idmapped again).
type Bind struct {
	Path          string
	DiscardWrites bool
	IDMapped      bool
}

// Tmpfs mounts an empty tmpfs (nosuid, nodev); Size 0 is the kernel's
// default (half the RAM). Its root takes the mode of an existing target,
// else 1777.
type Tmpfs struct{ Size int64 }

// Secret mounts a read-only file holding Data, with Mode (permission bits)
// and UID/GID in the step's ids, from a tmpfs private to the builder's
// mount namespace: it is never written to disk, nor to a layer, and is
// removed after the step. It is noexec unless Mode has an x bit.
type Secret struct {
	Data     []byte
	Mode     fs.FileMode
	UID, GID uint32
}

func (Bind) isMountSource()   {}
func (Tmpfs) isMountSource()  {}
func (Secret) isMountSource() {}
