package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

// rprivate keeps a step's mounts from propagating, in either direction.
var rprivate = []int{unix.MS_REC | unix.MS_PRIVATE}

// userMounts turns Spec.Mounts into libcontainer mounts, made after the
// standard ones, and records their stubs. What needs the host's side (a
// throwaway overlay, a secret's tmpfs) is mounted here, in the builder's
// private mount namespace, and unmounted by teardown (unmountHost).
//
// Sources are opened by libcontainer: the init itself when it can reach
// them, else (real root: a step's root has no right to the store's 0700
// directories) the builder's side, which hands the init an fd; idmapped
// binds are always cloned (open_tree) and idmapped by the builder's side.
func (s *step) userMounts() ([]*configs.Mount, error) {
	ms, err := orderMounts(s.spec.Mounts)
	if err != nil {
		return nil, err
	}
	out := make([]*configs.Mount, 0, len(ms))
	for i, m := range ms {
		var cm *configs.Mount
		switch src := m.Source.(type) {
		case Tmpfs:
			cm = tmpfsMount(m, src)
		case Bind:
			cm, err = s.bindMount(i, m, src)
		case Secret:
			cm, err = s.secretMount(i, m, src)
		default:
			err = fmt.Errorf("unknown mount source %T", m.Source)
		}
		if err != nil {
			return nil, fmt.Errorf("runtime: mount at %s: %w", m.Target, err)
		}
		s.recordMissing(cm.Destination)
		out = append(out, cm)
	}
	return out, nil
}

// orderMounts checks the targets and sorts the mounts by target, as
// BuildKit's exec op does (a parent before what is mounted inside it); of
// mounts with the same target the last one wins, as in BuildKit's spec.
func orderMounts(ms []Mount) ([]Mount, error) {
	sorted := make([]Mount, 0, len(ms))
	for _, m := range ms {
		if !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
			return nil, fmt.Errorf("runtime: invalid mount target %q: it must be an absolute path other than /", m.Target)
		}
		m.Target = path.Clean(m.Target)
		sorted = append(sorted, m)
	}
	slices.SortStableFunc(sorted, func(a, b Mount) int { return strings.Compare(a.Target, b.Target) })
	out := sorted[:0]
	for _, m := range sorted {
		if n := len(out); n > 0 && out[n-1].Target == m.Target {
			out[n-1] = m
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// tmpfsMount is BuildKit's tmpfs mount (nosuid, and size), nodev as well:
// a step cannot make device nodes anyway. libcontainer gives its root the
// mode of an existing target.
func tmpfsMount(m Mount, t Tmpfs) *configs.Mount {
	flags := unix.MS_NOSUID | unix.MS_NODEV
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var data string
	if t.Size > 0 {
		data = "size=" + strconv.FormatInt(t.Size, 10)
	}
	return &configs.Mount{Source: "tmpfs", Destination: m.Target, Device: "tmpfs", Flags: flags, Data: data}
}

// bindMount binds b at m.Target: idmapped as real root unless its path
// already shows the step's ids; a writable view of it with DiscardWrites.
func (s *step) bindMount(i int, m Mount, b Bind) (*configs.Mount, error) {
	src, idmapped := b.Path, b.IDMapped
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("bind source: %w", err)
	}
	if b.DiscardWrites && !m.ReadOnly {
		var err error
		if src, idmapped, err = s.discardable(i, b); err != nil {
			return nil, err
		}
	}
	flags := unix.MS_BIND | unix.MS_REC | unix.MS_NODEV
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	cm := &configs.Mount{Source: src, Destination: m.Target, Device: "bind", Flags: flags, PropagationFlags: rprivate}
	if sh := s.r.shift; sh != nil && !idmapped {
		cm.IDMapping = &configs.MountIDMapping{UserNSPath: sh.UserNSPath()}
	}
	return cm, nil
}

// discardable returns a writable stand-in for b, in the step's files dir,
// whose writes vanish after the step: an overlay on a directory (its
// upper dir thrown away), a private copy of a file. It reports whether
// the stand-in already shows the step's ids.
func (s *step) discardable(i int, b Bind) (string, bool, error) {
	fi, err := os.Stat(b.Path)
	if err != nil {
		return "", false, fmt.Errorf("bind source: %w", err)
	}
	// 0700: the upper dir holds what the step writes, setuid files included.
	dir := filepath.Join(s.files, "rw"+strconv.Itoa(i))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", false, err
	}
	switch {
	case fi.IsDir():
		if err := s.checkPrivateMounts("a writable bind mount"); err != nil {
			return "", false, err
		}
		merged, err := s.throwawayOverlay(dir, b)
		// Built on idmapped layers when shifted; else nothing to map.
		return merged, true, err
	case fi.Mode().IsRegular():
		p := filepath.Join(dir, "file")
		return p, b.IDMapped, copyFile(b.Path, p)
	}
	return "", false, fmt.Errorf("bind source %s: a writable bind mount needs a directory or a regular file, not %s", b.Path, fi.Mode().Type())
}

// checkPrivateMounts refuses to mount on the host's side outside a private
// mount namespace: as real root that is the one userns.Enter makes (the
// mounts then vanish with the process however it dies); rootless, the
// outer namespace is always one.
func (s *step) checkPrivateMounts(what string) error {
	if s.r.realRoot && !userns.PrivateMounts() {
		return fmt.Errorf("%s needs the private mount namespace userns.Enter makes for a real-root process", what)
	}
	return nil
}

// unmountHost detaches what userMounts mounted on the host's side,
// innermost first.
func (s *step) unmountHost() error {
	var errs []error
	for i := len(s.hostMounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(s.hostMounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("runtime: unmounting %s: %w", s.hostMounts[i], err))
		}
	}
	s.hostMounts = nil
	return errors.Join(errs...)
}
