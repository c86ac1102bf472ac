package snapshot

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// A commit has two halves: recording the upper directory (the layer tar
// hashed, its tar-split written: the layer's ID is then known) and storing
// it (containers/storage's staged apply: a rename and three rewrites of
// its metadata with their fsyncs, 4-10 ms). CommitAsync returns between
// the two, so that the next step's sandbox starts while the store works on
// the other core. The next step's snapshot stands on the committed upper
// directory itself, by a file descriptor opened before the store could
// rename it (the staged differ moves the directory as a whole, never its
// entries, and the overlay xattrs are fixed before: what the next step
// sees never changes), and the committed snapshot's directory is deleted
// only once the layer is stored and no snapshot stands on it any more.

// AsyncCommitter is implemented by Snapshotters that can return from a
// commit before its layer is stored (the overlay Store).
type AsyncCommitter interface {
	// CommitAsync is Commit in two halves: it returns once the snapshot's
	// changes are recorded (Committed has the layer's ID, parent, DiffID
	// and size, and the counts) and stores the layer meanwhile; wait
	// returns Commit's result. Until wait returns, the layer may only be
	// a parent for Prepare (as the snapshot Commit removes, its changes
	// go on existing until then); everything else waits for it.
	CommitAsync(ctx context.Context, key string, opts ...CommitOpt) (c Committed, wait func() (Committed, error), err error)
}

var _ AsyncCommitter = (*Store)(nil)

// pendingLayer is a layer CommitAsync recorded and is storing.
type pendingLayer struct {
	id, parent string
	st         *snapState // the committed snapshot, its upper dir the layer
	upper      *os.File   // the upper dir (O_PATH), whatever renames it
	done       chan struct{}
	c          Committed
	err        error

	mu       sync.Mutex
	standers int  // snapshots mounted on the upper dir
	stored   bool // the store is done with it (c, err are set)
	freed    bool // the committed snapshot is deleted already
}

// path names the upper dir for a mount, wherever it is by then.
func (p *pendingLayer) path() string { return "/proc/self/fd/" + strconv.Itoa(int(p.upper.Fd())) }

func (p *pendingLayer) wait() (Committed, error) {
	<-p.done
	return p.c, p.err
}

// stand marks one more snapshot standing on p, unless it is stored.
func (p *pendingLayer) stand() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stored || p.freed {
		return false
	}
	p.standers++
	return true
}

// freeEarly deletes the committed snapshot now if nothing stands on it,
// and lets nothing stand on it from then on: storing it failed, and on a
// full disk the store's clean-up needs the space.
func (p *pendingLayer) freeEarly() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.standers == 0 {
		p.freed = true
		_ = p.st.destroy()
	}
}

// leave ends one stander's use; the last one out after the store is done
// deletes the committed snapshot.
func (p *pendingLayer) leave() {
	p.mu.Lock()
	p.standers--
	last := p.standers == 0 && p.stored
	p.mu.Unlock()
	if last {
		p.cleanUp()
	}
}

// finish records the store's outcome; with no stander left it deletes
// the committed snapshot at once.
func (p *pendingLayer) finish(c Committed, err error) {
	p.mu.Lock()
	p.c, p.err, p.stored = c, err, true
	unused := p.standers == 0
	p.mu.Unlock()
	if unused {
		p.cleanUp()
	}
	close(p.done)
}

// cleanUp deletes the committed snapshot's directory (what the store did
// not take of it) and closes the upper dir's descriptor. A failure leaves
// a directory the next Open of the store removes with the owner dir.
func (p *pendingLayer) cleanUp() {
	_ = p.st.destroy()
	p.upper.Close()
}

// pendingOf returns the layer id being stored by this Store, if it is.
func (s *Store) pendingOf(id string) *pendingLayer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[id]
}

// track registers p until the store is done with it.
func (s *Store) track(p *pendingLayer) {
	s.mu.Lock()
	if _, ok := s.pending[p.id]; !ok { // the same layer from two stages: one to stand on
		s.pending[p.id] = p
	}
	s.mu.Unlock()
	s.storing.Add(1)
}

func (s *Store) untrack(p *pendingLayer) {
	s.mu.Lock()
	if s.pending[p.id] == p {
		delete(s.pending, p.id)
	}
	s.mu.Unlock()
	s.storing.Done()
}

// waitStored waits for layer id if this Store is storing it.
func (s *Store) waitStored(id string) error {
	if p := s.pendingOf(id); p != nil {
		_, err := p.wait()
		return err
	}
	return nil
}

// pendingLowers returns the lower dirs of a snapshot on the layer id while
// it is being stored (its upper dir, then its parent's chain), with the
// pending layers it stands on; ok is false when id is not pending (then
// nothing is held).
func (s *Store) pendingLowers(id string) (lowers []string, on []*pendingLayer, ok bool, err error) {
	p := s.pendingOf(id)
	if p == nil || !p.stand() {
		return nil, nil, false, nil
	}
	on = []*pendingLayer{p}
	lowers = []string{p.path()}
	if p.parent != "" {
		more, moreOn, pending, err := s.pendingLowers(p.parent)
		if err == nil && !pending {
			_, more, _, err = s.lowerDirs(p.parent)
		}
		on = append(on, moreOn...)
		if err != nil {
			leaveAll(on)
			return nil, nil, false, err
		}
		lowers = append(lowers, more...)
	}
	if len(lowers) > maxLowers {
		leaveAll(on)
		return nil, nil, false, fmt.Errorf("layer %s has more than %d ancestors, overlayfs's limit", id, maxLowers)
	}
	return lowers, on, true, nil
}

func leaveAll(on []*pendingLayer) {
	for _, p := range on {
		p.leave()
	}
}

// openUpper opens the upper dir for pendingLayer.upper.
func openUpper(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}
