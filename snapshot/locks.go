package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Store-wide locks, files in <graphroot>/stepexec shared by every stepexec
// process on the store:
//
//   - lock: Open's cleanup of dead processes' owner directories.
//   - commit.lock: one Commit at a time, from its existence check of the
//     layer ID to the layer's creation.
//   - gc.lock: shared while a process records that it holds a layer (a
//     lease's journal, a snapshot's parent file) right after looking it up;
//     exclusive while layers or images are deleted, so no deletion happens
//     between another process's lookup and its hold. Shared holders take it
//     for a few microseconds; deletions are rare.
const (
	ownersLockName = "lock"
	commitLockName = "commit.lock"
	gcLockName     = "gc.lock"
)

// lockStore takes the store-wide lock name (unix.LOCK_SH or LOCK_EX) and
// returns its release. Each call opens the file anew: flocks of distinct
// open files conflict even within one process, so goroutines exclude each
// other as processes do.
func (s *Store) lockStore(name string, how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.base, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot: opening lock %s: %w", name, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot: locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// lockFile opens (creating) path and takes an exclusive flock on it,
// waiting for it if wait is set.
func lockFile(path string, wait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot: opening lock %s: %w", path, err)
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot: locking %s: %w", path, err)
	}
	return f, nil
}

// ownerAlive reports whether a live process holds the lock of the owner
// directory dir (this process included: flock conflicts between open
// files, not processes).
func ownerAlive(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
}
