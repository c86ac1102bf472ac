package runtime

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// recordMissing remembers every missing component of dest in the rootfs:
// libcontainer creates them as mountpoints (directories, or an empty file
// for a file bind), and they must not land in the layer. dest is resolved
// as libcontainer resolves mount targets, symlinks of the image kept
// inside the rootfs, so the stubs are the paths it creates.
func (s *step) recordMissing(dest string) {
	p, err := securejoin.SecureJoin(s.rootfs, dest)
	if err != nil {
		return
	}
	for s.inRootfs(p) {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return
		}
		if !slices.Contains(s.stubs, p) {
			s.stubs = append(s.stubs, p)
		}
		p = filepath.Dir(p)
	}
}

// inRootfs reports whether p is strictly below the rootfs.
func (s *step) inRootfs(p string) bool {
	return strings.HasPrefix(p, s.rootfs+"/")
}

// removeStubs removes, deepest first, the recorded paths that are still
// stubs: an empty directory or empty regular file, reached through no
// symlink. Anything else was written by the step and stays. As BuildKit
// does, the parent directory keeps the times it had after the step, so
// removing a stub leaves no trace in its metadata either.
func (s *step) removeStubs() {
	paths := slices.Clone(s.stubs)
	slices.SortFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range paths {
		// The step may have replaced a component with a symlink.
		if q, err := securejoin.SecureJoin(s.rootfs, strings.TrimPrefix(p, s.rootfs)); err != nil || q != p {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil || !(fi.IsDir() || fi.Mode().IsRegular() && fi.Size() == 0) {
			continue
		}
		parent := filepath.Dir(p)
		var st unix.Stat_t
		if err := unix.Lstat(parent, &st); err != nil {
			continue
		}
		if os.Remove(p) != nil { // a non-empty directory, as wanted
			continue
		}
		times := []unix.Timespec{st.Atim, st.Mtim}
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, parent, times, unix.AT_SYMLINK_NOFOLLOW)
	}
}
