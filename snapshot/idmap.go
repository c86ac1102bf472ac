package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

// stepView is what a real-root Store needs to mount snapshots for steps
// (see userns.Shift): detached idmapped clones of the overlay driver's
// home, <graphroot>/overlay (every layer's diff dir), and of the Store's
// owner dir (every snapshot's upper and work dir, which overlay wants on
// one mount). They are made once, on the first PrepareStep, and closed by
// Close. Being attached nowhere, they cannot outlive the process nor be
// seen in any mount table; an overlay mounted on them keeps what it uses.
type stepView struct {
	shift         *userns.Shift
	layers, snaps *os.File
}

// stepView returns the Store's view for steps, making it on first use, or
// nil when steps are not shifted (not real root, or the kernel fallback
// userns.StepShift warned about).
func (s *Store) stepView() (*stepView, error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.view != nil {
		return s.view, nil
	}
	shift, err := userns.StepShift()
	if err != nil || shift == nil {
		return nil, err
	}
	if err := makeTraversable(s.ownerDir); err != nil {
		return nil, err
	}
	home := filepath.Join(s.graphRoot, "overlay")
	layers, err := shift.Clone(home)
	if err != nil {
		return nil, err
	}
	snaps, err := shift.Clone(s.ownerDir)
	if err != nil {
		layers.Close()
		return nil, err
	}
	s.view = &stepView{shift: shift, layers: layers, snaps: snaps}
	return s.view, nil
}

// close drops the clones (an overlay still mounted on them keeps its own
// references).
func (v *stepView) close() {
	v.layers.Close()
	v.snaps.Close()
}

// setLayers gives the overlay being configured on fsfd its lower, upper
// and work directories as O_PATH fds inside the idmapped clones.
func (v *stepView) setLayers(fsfd int, m overlayMount) error {
	type layer struct {
		key  string
		root *os.File
		rel  string
	}
	layers := make([]layer, 0, len(m.lowerRels)+2)
	for _, rel := range m.lowerRels {
		layers = append(layers, layer{"lowerdir+", v.layers, rel})
	}
	if m.emptyRel != "" {
		// A parentless snapshot's empty lower dir lives in its own dir.
		layers = append(layers, layer{"lowerdir+", v.snaps, m.emptyRel})
	}
	layers = append(layers, layer{"upperdir", v.snaps, m.upperRel}, layer{"workdir", v.snaps, m.workRel})
	for _, l := range layers {
		fd, err := unix.Openat(int(l.root.Fd()), l.rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("overlay %s for %s: opening %s in %s: %w", l.key, m.target, l.rel, l.root.Name(), err)
		}
		err = unix.FsconfigSetFd(fsfd, l.key, fd)
		unix.Close(fd)
		if err != nil {
			return fsError(fsfd, fmt.Sprintf("overlay %s %s (idmapped) for %s", l.key, l.rel, m.target), err)
		}
	}
	return nil
}

// rel returns lower, a layer's diff dir under <graphroot>/overlay, relative
// to the layers clone.
func (v *stepView) rel(s *Store, lower string) (string, error) {
	home := filepath.Join(s.graphRoot, "overlay")
	rel, err := filepath.Rel(home, lower)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("layer dir %s is not under %s", lower, home)
	}
	return rel, nil
}

// makeTraversable adds search permission for others (o+x) to dir and each
// of its ancestors that lacks it, as podman does for containers in a user
// namespace (libpod's makeAccessible): libcontainer's init resolves the
// rootfs path as the step's root, a host uid that owns none of them and
// has no capability over them. Nothing is made listable or readable.
func makeTraversable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return fmt.Errorf("making %s reachable for steps: %w", dir, err)
		}
		if st.Mode&0o001 == 0 {
			if err := unix.Chmod(d, (st.Mode&0o7777)|0o001); err != nil {
				return fmt.Errorf("making %s reachable for steps: %w", dir, err)
			}
		}
		if d == "/" {
			return nil
		}
	}
}
