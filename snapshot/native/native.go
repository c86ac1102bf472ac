package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/snapshot"
)

// Store is a native Snapshotter rooted in one directory.
type Store struct {
	root string
	lock *os.File

	mu     sync.Mutex
	snaps  map[string]*snap
	closed bool
}

// snap is an active snapshot or view.
type snap struct {
	key, parent string
	dir         string // <root>/snapshots/<key>
	view        bool
	before      map[string]entry // the tree as prepared (not for views)
}

func (sn *snap) tree() string { return filepath.Join(sn.dir, "tree") }

var _ snapshot.Snapshotter = (*Store)(nil)

// Open opens (creating) the store in root, which no other process may be
// using, and removes the snapshots a killed process left there.
func Open(root string) (*Store, error) {
	for _, d := range []string{root, filepath.Join(root, "layers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("native: creating %s: %w", d, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("native: opening lock in %s: %w", root, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("native: %s is in use by another process: %w", root, err)
	}
	snaps := filepath.Join(root, "snapshots")
	if err := removeTree(snaps); err != nil {
		lock.Close()
		return nil, fmt.Errorf("native: removing leftover snapshots: %w", err)
	}
	if err := os.Mkdir(snaps, 0o700); err != nil {
		lock.Close()
		return nil, fmt.Errorf("native: %w", err)
	}
	return &Store{root: root, lock: lock, snaps: map[string]*snap{}}, nil
}

// Prepare copies the tree of the layer parent (an ID or name; "" = an
// empty tree) into a new snapshot named key. ForStep changes nothing.
func (s *Store) Prepare(ctx context.Context, key, parent string, _ ...snapshot.PrepareOpt) (*snapshot.Snapshot, error) {
	return s.open(ctx, "Prepare", key, parent, false)
}

// View copies the tree of the layer parent ("" = an empty directory)
// into a new view named key: a private copy, which Commit refuses.
func (s *Store) View(ctx context.Context, key, parent string, _ ...snapshot.PrepareOpt) (*snapshot.Snapshot, error) {
	return s.open(ctx, "View", key, parent, true)
}

func (s *Store) open(ctx context.Context, op, key, parent string, view bool) (_ *snapshot.Snapshot, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validKey(key); err != nil {
		return nil, err
	}
	sn := &snap{key: key, dir: filepath.Join(s.root, "snapshots", key), view: view}
	if err := s.reserve(op, sn); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.take(key)
			err = errors.Join(fmt.Errorf("native: %s %q: %w", op, key, err), removeTree(sn.dir))
		}
	}()
	chain, err := s.chain(parent)
	if err != nil {
		return nil, err
	}
	if len(chain) > 0 {
		sn.parent = chain[0].ID
	}
	if err := os.Mkdir(sn.dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(sn.tree(), 0o755); err != nil {
		return nil, err
	}
	if err := s.apply(ctx, sn.tree(), chain); err != nil {
		return nil, err
	}
	if !view {
		if sn.before, err = record(sn.tree()); err != nil {
			return nil, err
		}
		if err := waitTick(sn.dir, latestChange(sn.before)); err != nil {
			return nil, err
		}
	}
	return &snapshot.Snapshot{Key: key, Parent: sn.parent, Dir: sn.tree()}, nil
}

// validKey accepts one path element of at most 200 bytes.
func validKey(key string) error {
	if key == "" || key == "." || key == ".." || strings.ContainsAny(key, "/\x00") || len(key) > 200 {
		return fmt.Errorf("native: invalid key %q: it must be one path element (no '/'), at most 200 bytes", key)
	}
	return nil
}

// reserve claims sn.key for op (Prepare, View).
func (s *Store) reserve(op string, sn *snap) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("native: %s %q: store is closed", op, sn.key)
	}
	if _, ok := s.snaps[sn.key]; ok {
		return fmt.Errorf("native: %s %q: key already in use", op, sn.key)
	}
	s.snaps[sn.key] = sn
	return nil
}

// take removes key from the table and returns it (nil if unknown).
func (s *Store) take(key string) *snap {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.snaps[key]
	delete(s.snaps, key)
	return sn
}

// Remove deletes a snapshot or view and its files; an unknown key is not
// an error.
func (s *Store) Remove(_ context.Context, key string) error {
	sn := s.take(key)
	if sn == nil {
		return nil
	}
	if err := removeTree(sn.dir); err != nil {
		return fmt.Errorf("native: Remove %q: %w", key, err)
	}
	return nil
}

// Diff opens the tar of the layer with the given ID or name.
func (s *Store) Diff(ctx context.Context, layerID string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := s.lookup(layerID)
	if err != nil {
		return nil, fmt.Errorf("native: diff of layer %s: %w", layerID, err)
	}
	f, err := os.Open(filepath.Join(s.layerDir(m.ID), tarName))
	if err != nil {
		return nil, fmt.Errorf("native: diff of layer %s: %w", layerID, err)
	}
	return f, nil
}

// Close removes the active snapshots and views and unlocks the root.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	snaps := s.snaps
	s.snaps = nil
	s.mu.Unlock()
	var errs []error
	for _, sn := range snaps {
		if err := removeTree(sn.dir); err != nil {
			errs = append(errs, fmt.Errorf("native: removing snapshot %q: %w", sn.key, err))
		}
	}
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

// removeTree deletes dir, making the directories below it writable
// first if they were not (a normal user cannot empty a read-only one).
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil || os.Geteuid() == 0 {
		return err
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
