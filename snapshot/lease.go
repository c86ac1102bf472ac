package snapshot

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// A Lease keeps layers, with their ancestors, from being deleted while a
// build uses them: the base it started from (which an rmi could otherwise
// take away mid-build) and the layers it commits before an image refers
// to them. In the style of containerd's and BuildKit's leases.
//
// Its journal, <owner>/leases/<name>, lists the layers one ID a line. Other
// stepexec processes read it as a root of garbage collection while this
// process lives. Should the process die, the next Open queues the journal,
// and the layers it lists that stepexec made and nothing else keeps are
// deleted: a killed build leaves no layers behind for long.
type Lease struct {
	s    *Store
	path string

	mu sync.Mutex
	f  *os.File // nil once released
	// held is what the journal lists; true for the layers the lease may
	// have made (commits, pulls), the candidates Release collects. The
	// others (a base image's, cache hits) were there before, kept by an
	// image or cache entry: should a prune or rmi drop those references
	// meanwhile, they are the next prune's (or the rmi's queue's), so
	// that a fully cached build ends without a collection.
	held map[string]bool
}

// leasesDir is the owner directory's directory of lease journals.
const leasesDir = "leases"

// NewLease starts a lease; Release ends it.
func (s *Store) NewLease() (*Lease, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	path := filepath.Join(s.ownerDir, leasesDir, hex.EncodeToString(b[:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot: starting a lease: %w", err)
	}
	l := &Lease{s: s, path: path, f: f, held: map[string]bool{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("snapshot: starting a lease: store is closed")
	}
	s.leases[l] = struct{}{}
	return l, nil
}

// Hold runs find, which looks up a layer (say, an image's top layer), and
// holds the layer it returns ("" holds nothing). find runs under the
// store's shared GC lock: no stepexec process can delete the layer between
// the lookup and the hold.
func (l *Lease) Hold(find func() (string, error)) (string, error) {
	unlock, err := l.s.lockStore(gcLockName, unix.LOCK_SH)
	if err != nil {
		return "", err
	}
	defer unlock()
	id, err := find()
	if err != nil || id == "" {
		return id, err
	}
	return id, l.hold(id, false)
}

// holdNew holds layer id, which the caller may be about to make: Release
// deletes it unless something keeps it by then.
func (l *Lease) holdNew(id string) error {
	unlock, err := l.s.lockStore(gcLockName, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	return l.hold(id, true)
}

// hold records id in the journal (made: see held). The caller holds the
// GC lock, shared.
func (l *Lease) hold(id string, made bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("snapshot: lease %s is released", filepath.Base(l.path))
	}
	if was, ok := l.held[id]; ok {
		l.held[id] = was || made
		return nil
	}
	if _, err := l.f.WriteString(id + "\n"); err != nil {
		return fmt.Errorf("snapshot: writing lease journal %s: %w", l.path, err)
	}
	l.held[id] = made
	return nil
}

// end closes the journal and returns the layers it may have made; the
// second call returns nothing.
func (l *Lease) end() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.f.Close()
	l.f = nil
	ids := make([]string, 0, len(l.held))
	for id, made := range l.held {
		if made {
			ids = append(ids, id)
		}
	}
	return ids
}

// Release ends the lease and deletes the layers it held that stepexec made
// and that nothing keeps any more (no image, no other lease or snapshot):
// a failed build's layers. It returns what it deleted. Releasing again is
// a no-op.
func (l *Lease) Release() (Collected, error) {
	l.s.mu.Lock()
	delete(l.s.leases, l)
	l.s.mu.Unlock()
	ids := l.end()
	if ids == nil {
		os.Remove(l.path)
		return Collected{}, nil
	}
	return l.s.sweep(sweepOptions{candidates: ids, forget: l.path})
}

// readJournal returns the layer IDs a lease journal lists. A line cut
// short by a kill is ignored.
func readJournal(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if id := sc.Text(); isLayerID(id) {
			ids = append(ids, id)
		}
	}
	return ids, sc.Err()
}

func isLayerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// holdForCommit records that Commit is about to look up or make layer id,
// in lease or, if nil, the Store's own lease.
func (s *Store) holdForCommit(lease *Lease, id string) error {
	if lease == nil {
		var err error
		if lease, err = s.ownLease(); err != nil {
			return err
		}
	}
	return lease.holdNew(id)
}

// ownLease is the Store's lease for commits made without one.
func (s *Store) ownLease() (*Lease, error) {
	s.ownLeaseMu.Lock()
	defer s.ownLeaseMu.Unlock()
	if s.defaultLease == nil {
		l, err := s.NewLease()
		if err != nil {
			return nil, err
		}
		s.defaultLease = l
	}
	return s.defaultLease, nil
}
