package engine

import (
	"context"
	"sync"

	"github.com/stepexec/stepexec/snapshot"
)

// A step's layer may still be being stored when the next step starts
// (snapshot.AsyncCommitter): the next step's sandbox then runs on it
// while the store works. Every commit first waits for the layer before it
// (its parent must be stored first), and a stage ends only once its last
// layer is stored, so nothing else ever sees a layer being stored. A layer
// that fails to be stored fails its own step, even when the error comes
// while the next one runs; its cache entry is written, and the cache
// key's lock released, only once it is stored.

// pendingCommit is a step's layer being stored. Its cache entry is
// written as soon as the store is done, not when the engine next looks:
// a build killed during the next step keeps it (docker does).
type pendingCommit struct {
	done  chan struct{}
	mu    sync.Mutex
	after []func() // once stored: the cache key's lock
	ended bool     // after ran
	err   error
}

// storing watches wait and records the layer (record) once it is stored.
func storing(wait func() (snapshot.Committed, error), record func(snapshot.Committed)) *pendingCommit {
	p := &pendingCommit{done: make(chan struct{})}
	go func() {
		c, err := wait()
		if err == nil {
			record(c)
		}
		p.mu.Lock()
		p.err, p.ended = err, true
		after := p.after
		p.mu.Unlock()
		for _, f := range after {
			f()
		}
		close(p.done)
	}()
	return p
}

// finish waits until the layer is stored and recorded; nil finishes at
// once.
func (p *pendingCommit) finish() error {
	if p == nil {
		return nil
	}
	<-p.done
	return p.err
}

// afterCommit runs f once this step's layer is stored (at once if it made
// none, or is stored).
func (r *stepRun) afterCommit(f func()) {
	if p := r.pending; p != nil {
		p.mu.Lock()
		if !p.ended {
			p.after = append(p.after, f)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	f()
}

// commit commits the snapshot key, returning before its layer is stored
// when the Snapshotter can.
func (r *stepRun) commit(ctx context.Context, key string) (snapshot.Committed, func() (snapshot.Committed, error), error) {
	opts := r.commitOpts()
	if a, ok := r.b.deps.Snaps.(snapshot.AsyncCommitter); ok {
		return a.CommitAsync(ctx, key, opts...)
	}
	c, err := r.b.deps.Snaps.Commit(ctx, key, opts...)
	return c, func() (snapshot.Committed, error) { return c, err }, err
}
