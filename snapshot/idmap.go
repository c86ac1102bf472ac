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
// one mount), and the directory the overlays are mounted in. The clones
// are made once, on the first ForStep Prepare, and closed by Close. Being
// attached nowhere, they cannot outlive the process nor be seen in any
// mount table; an overlay mounted on them keeps what it uses.
type stepView struct {
	shift         *userns.Shift
	layers, snaps *os.File
	// roots is a tmpfs in this process's private mount namespace, the
	// only place on a path the step's root (a host uid without any right
	// to the store's 0700 directories) may resolve, as libcontainer's init
	// resolves the rootfs; see stepRoots.
	roots *stepRoots
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
	roots, err := mountStepRoots()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(s.graphRoot, "overlay")
	layers, err := shift.Clone(home)
	if err != nil {
		roots.close()
		return nil, err
	}
	snaps, err := shift.Clone(s.ownerDir)
	if err != nil {
		layers.Close()
		roots.close()
		return nil, err
	}
	s.view = &stepView{shift: shift, layers: layers, snaps: snaps, roots: roots}
	return s.view, nil
}

// close drops the clones (an overlay still mounted on them keeps its own
// references) and unmounts the roots' tmpfs with whatever is left on it.
func (v *stepView) close() error {
	v.layers.Close()
	v.snaps.Close()
	return v.roots.close()
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
	if !m.readOnly {
		layers = append(layers, layer{"upperdir", v.snaps, m.upperRel}, layer{"workdir", v.snaps, m.workRel})
	}
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
