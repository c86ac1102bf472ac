package snapshot

import (
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
// empty dirs; it is never attached anywhere), as containers/storage probes
// overlay features (supportsIdmappedLowerLayers, supportsDataOnlyLayers) by
// mounting one. Anything short of a created overlay means no: mount(2)
// works on every kernel (mount_legacy.go), so it is the safe answer when
// the probe cannot tell.
var lowerdirAppend = sync.OnceValue(probeLowerdirAppend)

func probeLowerdirAppend() bool {
	dir, err := os.MkdirTemp("", "stepexec-overlay-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	lowers := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	for _, l := range lowers {
		if err := os.Mkdir(l, 0o755); err != nil {
			return false
		}
	}
	return createOverlayAppending(lowers, inUserNamespace()) == nil
}

// createOverlayAppending creates (and drops) a read-only overlay of lowers
// given one by one with "lowerdir+".
func createOverlayAppending(lowers []string, userxattr bool) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return err
		}
	}
	if userxattr {
		if err := unix.FsconfigSetFlag(fd, "userxattr"); err != nil {
			return err
		}
	}
	return unix.FsconfigCreate(fd)
}
