package runtime

import "io/fs"

// Mount is an extra mount of a step (RUN --mount), at Target in its rootfs.
type Mount struct {
	Target   string // absolute path in the step's root filesystem
	Source   MountSource
	ReadOnly bool
}

// MountSource is one of Bind, Tmpfs or Secret.
type MountSource interface{ isMountSource() }

// Bind mounts a host directory or file. With DiscardWrites the step may
// write to it but its writes go to a throwaway layer (RUN --mount=type=bind,rw).
// As real root the mount is idmapped like the rootfs, so the step sees the
// owners a stored layer has.
type Bind struct {
	Path          string
	DiscardWrites bool
}

// Tmpfs mounts an empty tmpfs; Size 0 is the kernel's default.
type Tmpfs struct{ Size int64 }

// Secret mounts a file holding Data, readable per Mode/UID/GID (in the
// step's ids), from a private tmpfs: it is never written to a layer.
type Secret struct {
	Data     []byte
	Mode     fs.FileMode
	UID, GID uint32
}

func (Bind) isMountSource()   {}
func (Tmpfs) isMountSource()  {}
func (Secret) isMountSource() {}
