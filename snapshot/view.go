package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// View mounts a read-only view of the layer parent and its ancestors, named
// key like a snapshot (Remove drops it; it cannot be committed). COPY
// --from reads a stage's or image's files through it. An empty parent
// gives an empty directory. The view shows the ids files are stored with
// (it is not idmapped): this process reads it.
//
// With ForStep it is for a RUN step to see (RUN --mount=type=bind,from=):
// as real root its layers are idmapped as a step's snapshot's are, and
// Snapshot.IDMapped is set, so that a bind mount of it (which cannot idmap
// an overlay) shows the step the stored owners. An empty parent gives an
// empty directory that is not idmapped. Rootless it is the plain view.
func (s *Store) View(ctx context.Context, key, parent string, opts ...PrepareOpt) (*Snapshot, error) {
	return s.mountView(ctx, key, parent, PrepareOptionsOf(opts).ForStep)
}

func (s *Store) mountView(ctx context.Context, key, parent string, forStep bool) (_ *Snapshot, err error) {
	st, view, err := s.begin(ctx, "View", key, forStep && parent != "", true)
	if err != nil {
		return nil, err
	}
	defer s.abandonOnError(st, &err)
	if err := os.Mkdir(st.dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: View %q: %w", key, err)
	}
	st.target = filepath.Join(st.dir, "merged")
	if err := os.Mkdir(st.target, 0o755); err != nil {
		return nil, fmt.Errorf("snapshot: View %q: %w", key, err)
	}
	if parent != "" {
		// A view sees the layers where the store keeps them.
		if err := s.waitStored(parent); err != nil {
			return nil, fmt.Errorf("snapshot: View %q: layer %s: %w", key, parent, err)
		}
		// The parent file keeps the viewed layers from garbage collection.
		id, lowers, shortcuts, _, err := s.standOn(st, parent)
		if err != nil {
			return nil, fmt.Errorf("snapshot: View %q: %w", key, err)
		}
		st.snap.Parent = id
		// Overlay needs two lower dirs when it has no upper one.
		if len(lowers) == 1 {
			lowers = append(lowers, s.empty)
			if shortcuts != nil {
				shortcuts = append(shortcuts, s.empty)
			}
		}
		m := overlayMount{lowers: lowers, legacyShortcuts: shortcuts, target: st.target, userxattr: inUserNamespace(), readOnly: true}
		if view != nil {
			if err := s.viewLayers(&m, view, key); err != nil {
				return nil, fmt.Errorf("snapshot: View %q: %w", key, err)
			}
			st.snap.IDMapped = true
		}
		if err := mountOverlay(m); err != nil {
			return nil, fmt.Errorf("snapshot: View %q: %w", key, err)
		}
		st.mounted = true
	}
	st.snap.Dir = st.target
	snap := st.snap
	return &snap, nil
}

// viewLayers points a read-only view's overlay at the step view's
// idmapped clones; the empty lower dir a one-layer view needs becomes one
// in the view's own dir.
func (s *Store) viewLayers(m *overlayMount, view *stepView, key string) error {
	m.view = view
	for _, l := range m.lowers {
		if l == s.empty {
			m.emptyRel = filepath.Join(key, "empty")
			if err := os.Mkdir(filepath.Join(s.ownerDir, m.emptyRel), 0o755); err != nil {
				return err
			}
			continue
		}
		rel, err := view.rel(s, l)
		if err != nil {
			return err
		}
		m.lowerRels = append(m.lowerRels, rel)
	}
	return nil
}

// begin starts op (Prepare, View) of key: with forStep it gets the
// Store's step view first, then checks the key and claims it for a new
// snapshot's state.
func (s *Store) begin(ctx context.Context, op, key string, forStep, isView bool) (*snapState, *stepView, error) {
	var sv *stepView
	if forStep {
		var err error
		if sv, err = s.stepView(); err != nil {
			return nil, nil, fmt.Errorf("snapshot: %s %q: %w", op, key, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := validKey(key); err != nil {
		return nil, nil, err
	}
	st := &snapState{snap: Snapshot{Key: key}, dir: filepath.Join(s.ownerDir, key), view: isView}
	if err := s.reserve(op, key, st); err != nil {
		return nil, nil, err
	}
	return st, sv, nil
}

// abandonOnError, deferred with the named error of a Prepare or View that
// began st, undoes what it made when it fails.
func (s *Store) abandonOnError(st *snapState, err *error) {
	if *err != nil {
		_ = st.destroy()
		s.release(st.snap.Key)
	}
}

// reserve claims key in the Store's table for op (Prepare, View).
func (s *Store) reserve(op, key string, st *snapState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("snapshot: %s %q: store is closed", op, key)
	}
	if _, ok := s.snaps[key]; ok {
		return fmt.Errorf("snapshot: %s %q: key already in use", op, key)
	}
	s.snaps[key] = st
	return nil
}

// release forgets key (after a failed Prepare or View).
func (s *Store) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snaps != nil {
		delete(s.snaps, key)
	}
}

// readOnlyAttr is the fsmount attribute of a view.
func readOnlyAttr(ro bool) int {
	if ro {
		return unix.MOUNT_ATTR_RDONLY
	}
	return 0
}
