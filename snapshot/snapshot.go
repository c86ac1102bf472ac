package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// maxLowers is overlayfs's stacking limit (OVL_MAX_STACK).
const maxLowers = 500

type snapState struct {
	snap    Snapshot
	dir     string // <owner>/<key>
	target  string // the overlay's mount point: <dir>/merged, or in stepView.roots
	mounted bool
	view    bool // read-only (View): cannot be committed
	// standsOn: the layers being stored whose upper dirs the mount has
	// as lower dirs (pending.go), left once it is unmounted.
	standsOn []*pendingLayer
	// storedLowers: the parent chain's diff dirs where the store keeps
	// them (the pending ones once stored), top first, for pruneUpper.
	storedLowers []string
}

func (st *snapState) upper() string { return filepath.Join(st.dir, "upper") }

// unmountOnce detaches the merged dir if it is still mounted.
func (st *snapState) unmountOnce() error {
	if !st.mounted {
		leaveAll(st.standsOn) // a mount that failed
		st.standsOn = nil
		return nil
	}
	if err := unmount(st.target); err != nil {
		return fmt.Errorf("snapshot %q: %w", st.snap.Key, err)
	}
	st.mounted = false
	leaveAll(st.standsOn)
	st.standsOn = nil
	return nil
}

// destroy unmounts and deletes the snapshot directory (and its mount point
// when that is outside it). It deletes nothing while the mount might still
// be there.
func (st *snapState) destroy() error {
	if err := st.unmountOnce(); err != nil {
		return err
	}
	if st.target != "" && filepath.Dir(st.target) != st.dir {
		if err := os.Remove(st.target); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snapshot %q: removing %s: %w", st.snap.Key, st.target, err)
		}
	}
	if err := os.RemoveAll(st.dir); err != nil {
		return fmt.Errorf("snapshot %q: removing %s: %w", st.snap.Key, st.dir, err)
	}
	return nil
}

func validKey(key string) error {
	if key == "" || key == "." || key == ".." || key == "lock" || key == scratchName || key == leasesDir || strings.ContainsAny(key, "/\x00") || len(key) > 200 {
		return fmt.Errorf("snapshot: invalid key %q: it must be one path element (no '/'), at most 200 bytes, and not \"lock\", %q or %q", key, scratchName, leasesDir)
	}
	return nil
}

// Prepare mounts a new writable snapshot named key on top of the layer
// parent (an ID or name; "" = an empty tree) and returns it. The key must
// not be in use in this Store. Its files are seen with the ids they are
// stored with, for this process to write (an import, WORKDIR's mkdir); a
// RUN step's snapshot needs ForStep.
func (s *Store) Prepare(ctx context.Context, key, parent string, opts ...PrepareOpt) (_ *Snapshot, err error) {
	st, view, err := s.begin(ctx, "Prepare", key, PrepareOptionsOf(opts).ForStep, false)
	if err != nil {
		return nil, err
	}
	defer s.abandonOnError(st, &err)
	if err := s.mountSnapshot(st, parent, view); err != nil {
		return nil, fmt.Errorf("snapshot: Prepare %q: %w", key, err)
	}
	snap := st.snap
	return &snap, nil
}

// mountSnapshot creates st's directories and mounts its overlay on the
// layer parent ("" = an empty tree); with a view, for a step of a
// real-root process (see stepView).
func (s *Store) mountSnapshot(st *snapState, parent string, view *stepView) error {
	key := st.snap.Key
	st.target = filepath.Join(st.dir, "merged")
	if view != nil {
		// The step's root resolves this path: see stepView.roots.
		st.target = filepath.Join(view.roots.dir, key)
	}
	m := overlayMount{
		upper:     st.upper(),
		work:      filepath.Join(st.dir, "work"),
		target:    st.target,
		userxattr: inUserNamespace(),
	}
	// Only root (and overlayfs, through the view's clones) may enter it:
	// the upper dir holds whatever the step writes, setuid files included.
	if err := os.Mkdir(st.dir, 0o700); err != nil {
		return err
	}
	if parent != "" {
		if view != nil || st.view {
			// Views and real root's steps see layers through their
			// store paths: the layer must be stored first.
			if err := s.waitStored(parent); err != nil {
				return fmt.Errorf("layer %s: %w", parent, err)
			}
		}
		id, lowers, shortcuts, on, err := s.standOn(st, parent)
		if err != nil {
			return err
		}
		st.snap.Parent = id
		st.standsOn = on
		m.lowers, m.legacyShortcuts = lowers, shortcuts
		st.storedLowers = s.storedLowers(lowers, on)
	} else {
		// overlay needs at least one lower dir.
		m.lowers = []string{s.empty}
	}
	if view != nil {
		m.view = view
		m.upperRel, m.workRel = filepath.Join(key, "upper"), filepath.Join(key, "work")
		if parent == "" {
			m.emptyRel = filepath.Join(key, "empty")
		} else {
			for _, l := range m.lowers {
				rel, err := view.rel(s, l)
				if err != nil {
					return err
				}
				m.lowerRels = append(m.lowerRels, rel)
			}
		}
		st.snap.IDMapped = true
	}

	dirs := []string{m.upper, m.work, m.target}
	if m.emptyRel != "" {
		dirs = append(dirs, filepath.Join(s.ownerDir, m.emptyRel))
	}
	for _, d := range dirs {
		// upper's root attributes become the rootfs root's.
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := mountOverlay(m); err != nil {
		return err
	}
	st.mounted = true
	st.snap.Dir = m.target
	return nil
}

// parentFile, in a snapshot's directory, names the layer it was prepared
// on: a GC root while the process lives.
const parentFile = "parent"

// standOn resolves parent and records it in the snapshot's parent file,
// under the shared GC lock so that no collection deletes the layers
// between the lookup and the record. It returns lowerDirs' results, or for
// a layer being stored its pending lower dirs and the pending layers the
// snapshot stands on (pending.go).
func (s *Store) standOn(st *snapState, parent string) (string, []string, []string, []*pendingLayer, error) {
	unlock, err := s.lockStore(gcLockName, unix.LOCK_SH)
	if err != nil {
		return "", nil, nil, nil, err
	}
	defer unlock()
	id, lowers, shortcuts := parent, []string(nil), []string(nil)
	lowers, on, pending, err := s.pendingLowers(parent)
	if err == nil && !pending {
		id, lowers, shortcuts, err = s.lowerDirs(parent)
	}
	if err != nil {
		return "", nil, nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(st.dir, parentFile), []byte(id), 0o600); err != nil {
		leaveAll(on)
		return "", nil, nil, nil, err
	}
	return id, lowers, shortcuts, on, nil
}

// lowerDirs resolves parent (an ID or name) and returns its ID and the diff
// directories of the chain from parent down to the base layer, top first,
// plus their short "l/" links (for the mount(2) fallback; nil if any is
// missing).
func (s *Store) lowerDirs(parent string) (string, []string, []string, error) {
	var lowers, shortcuts []string
	overlayHome := filepath.Join(s.graphRoot, "overlay")
	topID := ""
	for id := parent; id != ""; {
		if len(lowers) >= maxLowers {
			return "", nil, nil, fmt.Errorf("layer %s has more than %d ancestors, overlayfs's limit", parent, maxLowers)
		}
		l, err := s.store.Layer(id)
		if err != nil {
			return "", nil, nil, fmt.Errorf("looking up layer %s: %w", id, err)
		}
		if topID == "" {
			topID = l.ID
		}
		diff := filepath.Join(overlayHome, l.ID, "diff")
		if fi, err := os.Stat(diff); err != nil || !fi.IsDir() {
			return "", nil, nil, fmt.Errorf("layer %s has no overlay diff directory %s (is it in another store?): %v", l.ID, diff, err)
		}
		lowers = append(lowers, diff)
		if shortcuts != nil || len(lowers) == 1 {
			link, err := os.ReadFile(filepath.Join(overlayHome, l.ID, "link"))
			if err == nil && len(strings.TrimSpace(string(link))) > 0 {
				shortcuts = append(shortcuts, filepath.Join(overlayHome, "l", strings.TrimSpace(string(link))))
			} else {
				shortcuts = nil
			}
		}
		id = l.Parent
	}
	if len(shortcuts) != len(lowers) {
		shortcuts = nil
	}
	return topID, lowers, shortcuts, nil
}

// take removes key's snapshot from the Store's table and returns it (nil if
// unknown).
func (s *Store) take(key string) *snapState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.snaps[key]
	if st != nil {
		delete(s.snaps, key)
	}
	return st
}

// Remove unmounts and deletes a snapshot or view without committing.
// Removing an unknown key is not an error.
func (s *Store) Remove(_ context.Context, key string) error {
	st := s.take(key)
	if st == nil {
		return nil
	}
	return st.destroy()
}

// Commit unmounts the snapshot, writes its upper dir as a layer tar, stores
// it as a new layer on the snapshot's parent, and removes the snapshot (on
// success and on failure). An upper dir with no changes gives Empty and no
// layer; a layer whose ID already exists is returned as is.
func (s *Store) Commit(ctx context.Context, key string, commitOpts ...CommitOpt) (Committed, error) {
	_, wait, err := s.CommitAsync(ctx, key, commitOpts...)
	if err != nil {
		return Committed{}, err
	}
	return wait()
}

// CommitAsync: see AsyncCommitter and pending.go.
func (s *Store) CommitAsync(ctx context.Context, key string, commitOpts ...CommitOpt) (c Committed, wait func() (Committed, error), err error) {
	opts := CommitOptionsOf(commitOpts)
	st := s.take(key)
	if st == nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: no such snapshot", key)
	}
	if st.view {
		_ = st.destroy()
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: a view cannot be committed", key)
	}
	stored := false // from here on, the pending layer destroys st
	defer func() {
		if stored {
			return
		}
		if derr := st.destroy(); derr != nil && err == nil {
			err = derr
		}
		if err != nil {
			c, wait = Committed{}, nil
		}
	}()
	done := func(c Committed) (Committed, func() (Committed, error), error) {
		return c, func() (Committed, error) { return c, nil }, nil
	}
	if err := st.unmountOnce(); err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Committed{}, nil, err
	}
	// The parent must be stored before its child is (and its lower dirs
	// be where the store keeps them, for pruneUpper).
	if err := s.waitStored(st.snap.Parent); err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: its parent layer %s: %w", key, st.snap.Parent, err)
	}
	upper := st.upper()
	if err := s.pruneUpper(st); err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: %w", key, err)
	}
	entries, err := os.ReadDir(upper)
	if err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: reading %s: %w", key, upper, err)
	}
	if len(entries) == 0 && !opts.KeepEmpty {
		return done(Committed{Empty: true})
	}

	// The ID depends on the DiffID, so the layer is recorded (hashed, and
	// its tar-split written) before it is stored. The tar-split file lives
	// in the snapshot dir and is removed with it.
	rec, err := recordLayer(ctx, upper, filepath.Join(st.dir, "tar-split.json"))
	if err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: %w", key, err)
	}
	defer func() {
		if !stored {
			rec.tarSplit.Close()
		}
	}()
	id := LayerID(st.snap.Parent, rec.diffID)
	if err := ctx.Err(); err != nil {
		return Committed{}, nil, err
	}
	// Before anything can stand on the upper dir: the store's layers carry
	// only the opaque marker, in its namespace.
	if err := fixXattrs(upper, rec.fixups); err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: %w", key, err)
	}
	fd, err := openUpper(upper)
	if err != nil {
		return Committed{}, nil, fmt.Errorf("snapshot: Commit %q: %w", key, err)
	}
	p := &pendingLayer{id: id, parent: st.snap.Parent, st: st, upper: fd, done: make(chan struct{})}
	c = Committed{Files: rec.files, Bytes: rec.bytes,
		Layer: Layer{ID: id, Parent: st.snap.Parent, DiffID: rec.diffID, Size: rec.size}}
	s.track(p)
	stored = true
	go func() {
		defer s.untrack(p)
		defer rec.tarSplit.Close()
		sc, err := s.storeLayer(key, st, id, rec, opts, c, p)
		p.finish(sc, err)
	}()
	return c, p.wait, nil
}

// storeLayer is the second half of a commit: it stores the recorded layer
// (or finds it stored already).
func (s *Store) storeLayer(key string, st *snapState, id string, rec *layerRecord, opts CommitOptions, c Committed, p *pendingLayer) (Committed, error) {
	// Between the existence check and ApplyStagedLayer no other stepexec
	// commit may run: ApplyStagedLayer on an existing ID would replace that
	// layer's diff directory, which may be another build's lower dir.
	unlock, err := s.lockStore(commitLockName, unix.LOCK_EX)
	if err != nil {
		return Committed{}, fmt.Errorf("snapshot: Commit %q: %w", key, err)
	}
	defer unlock()
	// Held before it is looked up or made: a collection can then neither
	// delete the layer found nor miss one a kill leaves half made.
	if err := s.holdForCommit(opts.Lease, id); err != nil {
		return Committed{}, fmt.Errorf("snapshot: Commit %q: %w", key, err)
	}
	if l, ok, err := s.existing(id, rec.diffID, opts.Names); err != nil || ok {
		if err == nil {
			if rerr := s.restoreTarSplit(id, rec.tarSplit); rerr != nil {
				return Committed{}, fmt.Errorf("snapshot: Commit %q: %w", key, rerr)
			}
		}
		c.Layer, c.Reused = l, ok
		return c, err
	}
	sl, err := s.commitStaged(st, id, rec, opts.Names)
	if errors.Is(err, errCrossDevice) {
		sl, err = s.putLayer(context.Background(), st, id, rec.diffID, opts.Names)
		if errors.Is(err, storage.ErrDuplicateID) {
			// Another tool stored the same layer meanwhile.
			l, ok, err := s.existing(id, rec.diffID, opts.Names)
			if err == nil && !ok {
				err = fmt.Errorf("snapshot: layer %s reported as duplicate but not found", id)
			}
			c.Layer, c.Reused = l, ok
			return c, err
		}
	}
	if err != nil {
		// The snapshot's space first: on a full disk, deleting what the
		// store made of the layer needs a little (destroy is idempotent),
		// unless a snapshot stands on it.
		p.freeEarly()
		if _, lerr := s.store.Layer(id); lerr == nil {
			_ = s.deleteStoreLayer(id)
		} else {
			s.saveLayerRecords(st.snap.Parent)
		}
		s.dropLayerLinks(id)
		return Committed{}, fmt.Errorf("snapshot: Commit %q: storing layer %s on parent %q: %w", key, id, st.snap.Parent, err)
	}
	if sl.UncompressedDigest != rec.diffID || sl.UncompressedSize != rec.size {
		_ = s.deleteStoreLayer(id)
		return Committed{}, fmt.Errorf("snapshot: Commit %q: store recorded digest %s size %d for layer %s, the differ wrote %s size %d", key, sl.UncompressedDigest, sl.UncompressedSize, id, rec.diffID, rec.size)
	}
	c.Layer = toLayer(sl)
	return c, nil
}

// pruneUpper drops the directories of st's upper dir that overlayfs only
// copied up (see pruneCopiedUpDirs).
func (s *Store) pruneUpper(st *snapState) error {
	if st.snap.Parent == "" {
		return nil
	}
	return pruneCopiedUpDirs(st.upper(), st.storedLowers)
}

// storedLowers returns a mount's lower dirs as the store keeps them: the
// first len(on) are the upper dirs of layers being stored (pendingLowers
// puts them first, in chain order), which the store moves to its diff
// dirs; the rest are those already.
func (s *Store) storedLowers(lowers []string, on []*pendingLayer) []string {
	stored := make([]string, 0, len(lowers))
	for _, p := range on {
		stored = append(stored, filepath.Join(s.graphRoot, "overlay", p.id, "diff"))
	}
	return append(stored, lowers[len(on):]...)
}

// dropLayerLinks removes the overlay driver's short-name links to layer id
// (<graphroot>/overlay/l/NAME -> ../ID/diff) when the layer's directory is
// gone: containers/storage's driver leaves its link behind when creating
// the layer fails after making it (a full disk). Commit calls it under the
// commit lock, so no other stepexec is creating that layer meanwhile.
func (s *Store) dropLayerLinks(id string) {
	overlay := filepath.Join(s.graphRoot, "overlay")
	if _, err := os.Lstat(filepath.Join(overlay, id)); err == nil {
		return
	}
	links := filepath.Join(overlay, "l")
	entries, err := os.ReadDir(links)
	if err != nil {
		return
	}
	want := filepath.Join("..", id, "diff")
	for _, e := range entries {
		p := filepath.Join(links, e.Name())
		if target, err := os.Readlink(p); err == nil && target == want {
			_ = os.Remove(p)
		}
	}
}

// putLayer is the copying commit, used when the upper directory cannot be
// renamed into the store (errCrossDevice): the tar is written to a spool
// file in the snapshot dir and unpacked by PutLayer.
func (s *Store) putLayer(ctx context.Context, st *snapState, id string, diffID digest.Digest, names []string) (*storage.Layer, error) {
	spool := filepath.Join(st.dir, "layer.tar")
	f, err := os.OpenFile(spool, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	digester := digest.Canonical.Digester()
	if _, _, err := writeLayerTar(ctx, io.MultiWriter(f, digester.Hash()), st.upper()); err != nil {
		return nil, err
	}
	if got := digester.Digest(); got != diffID {
		return nil, fmt.Errorf("the upper directory %s changed while committing: its tar hashed to %s, then to %s", st.upper(), diffID, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding %s: %w", spool, err)
	}
	sl, _, err := s.store.PutLayer(id, st.snap.Parent, names, "", false, madeLayer(), f)
	return sl, err
}

// existing returns the layer id if the store already has it (dedup), after
// checking it holds the same DiffID and adding names.
func (s *Store) existing(id string, diffID digest.Digest, names []string) (Layer, bool, error) {
	sl, err := s.store.Layer(id)
	if errors.Is(err, storage.ErrLayerUnknown) {
		return Layer{}, false, nil
	}
	if err != nil {
		return Layer{}, false, fmt.Errorf("snapshot: looking up layer %s: %w", id, err)
	}
	if sl.UncompressedDigest != diffID {
		return Layer{}, false, fmt.Errorf("snapshot: existing layer %s has DiffID %q, expected %s", id, sl.UncompressedDigest, diffID)
	}
	if len(names) > 0 {
		if err := s.store.AddNames(id, names); err != nil {
			return Layer{}, false, fmt.Errorf("snapshot: naming layer %s: %w", id, err)
		}
	}
	return toLayer(sl), true, nil
}
