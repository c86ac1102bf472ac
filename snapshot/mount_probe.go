package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// lowerdirAppend reports whether this kernel's overlayfs takes its lower
// dirs one by one through fsconfig's "lowerdir+" (Linux 6.8+). It is asked
// once per process; tests replace it to force the mount(2) path.
//
// Setting the parameter is not proof: before 6.5 overlayfs parsed its
// options the legacy way, and the VFS then queues any string parameter,
// "lowerdir+" included, into an option string that overlay refuses only at
// FSCONFIG_CMD_CREATE (EINVAL). So the probe creates a real overlay (on two
// empty dirs; it is never attached anywhere), as runc and containers/storage
// probe overlay features by mounting one.
var lowerdirAppend = sync.OnceValue(probeLowerdirAppend)

func probeLowerdirAppend() bool {
	dir, err := os.MkdirTemp("", "stepexec-overlay-probe-")
	if err != nil {
		return true // cannot tell: the real mount reports its own error
	}
	defer os.RemoveAll(dir)
	lowers := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	for _, l := range lowers {
		if err := os.Mkdir(l, 0o755); err != nil {
			return true
		}
	}
	return overlaySupportsLowerdirAppend(lowers, inUserNamespace())
}

// overlaySupportsLowerdirAppend creates a read-only overlay of lowers with
// "lowerdir+". Only ENOSYS (no fsopen) and EINVAL (the parameter refused,
// when set or at create) mean no: any other failure would fail mount(2)
// as well, and is best reported by the real mount.
func overlaySupportsLowerdirAppend(lowers []string, userxattr bool) bool {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return !errors.Is(err, unix.ENOSYS)
	}
	defer unix.Close(fd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return !errors.Is(err, unix.EINVAL)
		}
	}
	if userxattr {
		if err := unix.FsconfigSetFlag(fd, "userxattr"); err != nil {
			return !errors.Is(err, unix.EINVAL)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return !errors.Is(err, unix.EINVAL)
	}
	return true
}
