package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes k's lock, waiting while another build (any process) holds
// it, until ctx ends. The lock is a file flocked while held and removed
// when released, so none stay behind; a build that locked a file just
// removed sees that the path no longer names it and tries again.
func (x *Index) Lock(ctx context.Context, k Key) (unlock func(), err error) {
	p, err := x.path(k)
	if err != nil {
		return nil, err
	}
	p = filepath.Join(x.lockDir, filepath.Base(p))
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			if sameFile(f, p) {
				return func() { os.Remove(p); f.Close() }, nil
			}
			f.Close() // removed by its holder meanwhile: lock the new one
			continue
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return nil, fmt.Errorf("cache: locking %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// sameFile reports whether the open file f is still what path names.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}
