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

// pendingCommit is a step's layer being stored.
type pendingCommit struct {
	once   sync.Once
	wait   func() (snapshot.Committed, error)
	record func(snapshot.Committed) // the cache entry
	after  []func()                 // then: the cache key's lock
	err    error
}

// finish waits for the layer, records it and runs what waited for it; nil
// finishes at once.
func (p *pendingCommit) finish() error {
	if p == nil {
		return nil
	}
	p.once.Do(func() {
		c, err := p.wait()
		if err == nil && p.record != nil {
			p.record(c)
		}
		p.err = err
		for _, f := range p.after {
			f()
		}
	})
	return p.err
}

// afterCommit runs f once this step's layer is stored (at once if it made
// none, or is stored).
func (r *stepRun) afterCommit(f func()) {
	if r.pending != nil {
		r.pending.after = append(r.pending.after, f)
		return
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
