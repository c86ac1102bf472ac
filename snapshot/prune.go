package snapshot

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// pruneCopiedUpDirs removes from an unmounted upper directory the
// directories overlayfs only copied up: empty in the upper, not opaque,
// and the same (mode, owner, xattrs) as the directory the lower
// layers show at that path. Making a mountpoint in an existing directory
// (/etc/resolv.conf for a step, a RUN --mount target) copies the directory
// up even when the step changes nothing there; the layer must not hold
// it, as BuildKit's overlay differ leaves out unchanged directories.
// lowers are the parent chain's diff directories, top first.
func pruneCopiedUpDirs(upper string, lowers []string) error {
	_, err := pruneDir(upper, lowers, "")
	return err
}

// pruneDir prunes below rel and reports whether rel itself was removed.
func pruneDir(upper string, lowers []string, rel string) (bool, error) {
	full := filepath.Join(upper, rel)
	entries, err := os.ReadDir(full)
	if err != nil {
		return false, fmt.Errorf("pruning %s: %w", full, err)
	}
	_, opaque, ovl, err := readXattrs(full, true)
	if err != nil {
		return false, err
	}
	if opaque || hasRedirect(ovl) {
		// The lower's children are hidden or moved: whatever is below is
		// new, and the directory itself is a change.
		return false, nil
	}
	var before unix.Stat_t
	if err := unix.Lstat(full, &before); err != nil {
		return false, err
	}
	left := len(entries)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		removed, err := pruneDir(upper, lowers, path.Join(rel, e.Name()))
		if err != nil {
			return false, err
		}
		if removed {
			left--
		}
	}
	if left < len(entries) {
		// Removing a child is not a change of the directory's own.
		times := []unix.Timespec{before.Atim, before.Mtim}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, full, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false, fmt.Errorf("pruning %s: %w", full, err)
		}
	}
	if rel == "" || left > 0 {
		return false, nil
	}
	same, err := sameAsLower(upper, lowers, rel)
	if err != nil || !same {
		return false, err
	}
	if err := unix.Rmdir(full); err != nil {
		return false, fmt.Errorf("pruning %s: %w", full, err)
	}
	return true, nil
}

func hasRedirect(overlayXattrs []string) bool {
	for _, n := range overlayXattrs {
		if strings.HasSuffix(n, ".overlay.redirect") {
			return true
		}
	}
	return false
}

// sameAsLower reports whether the upper's directory rel has the metadata
// of the directory the lower layers show at rel.
func sameAsLower(upper string, lowers []string, rel string) (bool, error) {
	low := visibleInLowers(lowers, rel)
	if low == "" {
		return false, nil
	}
	var a, b unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, rel), &a); err != nil {
		return false, err
	}
	if err := unix.Lstat(low, &b); err != nil {
		return false, err
	}
	// Times are not compared, as in BuildKit's sameDirent: the mountpoint
	// made and removed in the directory changed its mtime, nothing else.
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid {
		return false, nil
	}
	xa, _, _, err := readXattrs(filepath.Join(upper, rel), true)
	if err != nil {
		return false, err
	}
	xb, _, _, err := readXattrs(low, true)
	if err != nil {
		return false, err
	}
	return maps.Equal(xa, xb), nil
}

// visibleInLowers returns the path of the directory the merged lower
// layers show at rel, or "" when they show none (or not a directory):
// the topmost layer holding rel wins, and a layer that whites out,
// replaces or makes opaque one of rel's ancestors hides the layers below.
func visibleInLowers(lowers []string, rel string) string {
	for _, l := range lowers {
		p := filepath.Join(l, rel)
		fi, err := os.Lstat(p)
		if err == nil {
			if fi.IsDir() {
				return p
			}
			return ""
		}
		if !errors.Is(err, os.ErrNotExist) || hidesBelow(l, rel) {
			return ""
		}
	}
	return ""
}

// hidesBelow reports whether layer l hides rel of the layers under it
// through one of rel's ancestors.
func hidesBelow(l, rel string) bool {
	for p := path.Dir(rel); p != "." && p != "/"; p = path.Dir(p) {
		full := filepath.Join(l, p)
		fi, err := os.Lstat(full)
		if err != nil {
			continue
		}
		if !fi.IsDir() {
			return true
		}
		if _, opaque, _, err := readXattrs(full, true); err != nil || opaque {
			return true
		}
	}
	return false
}
