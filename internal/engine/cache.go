package engine

import (
	"context"
	"slices"
	"time"

	"github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/snapshot"
)

// Cache is the build cache (internal/cache.Index).
type Cache interface {
	Get(k cache.Key) (cache.Record, bool, error)
	Put(k cache.Key, r cache.Record) error
	// Lock waits for and takes k's lock (across processes), for a build
	// about to run the step k.
	Lock(ctx context.Context, k cache.Key) (unlock func(), err error)
}

// The cache key rule (BuildKit's, see README "Build cache"): a step's key
// is its parent state's key, its kind, its definition after expansion and
// the digests of what it reads that is not in the parent's layers. A
// state's key starts as its base's (image ID, scratch, or the base stage's
// final key) and changes only with steps that make a layer; instructions
// that only change the config (ENV, ARG, USER, WORKDIR's path, SHELL,
// LABEL, …) do not change it, but the RUNs after them see their effect in
// their own definitions (env, user, cwd, shell), so they change those
// RUNs' keys — and LABEL, which no RUN sees, changes nothing.

// useCache reports whether this step may take a cached result.
func (r *stepRun) useCache() bool {
	req := r.b.req
	if r.b.deps.Cache == nil || req.NoCache {
		return false
	}
	for _, name := range req.NoCacheFilter {
		if r.p.stage.Name != "" && name == r.p.stage.Name {
			return false
		}
	}
	return true
}

// cached looks key up and, on a hit whose layer the store still has,
// returns st with that layer and the step's history entry (createdBy) as
// the step's result: no snapshot, no sandbox, no commit. On a miss it
// takes the key's lock and looks again (a concurrent build may have been
// running the same step); the caller runs the step and then calls
// release, after the result is recorded. On an error it returns st.
func (r *stepRun) cached(ctx context.Context, st State, key cache.Key, createdBy string) (out State, hit bool, release func(), err error) {
	release = func() {}
	if !r.useCache() {
		return st, false, release, nil
	}
	if got, ok := r.lookup(ctx, st, key); ok {
		return got.withHistory(createdBy, false), true, release, nil
	}
	unlock, err := r.b.deps.Cache.Lock(ctx, key)
	if err != nil {
		return st, false, release, err
	}
	if got, ok := r.lookup(ctx, st, key); ok {
		unlock()
		return got.withHistory(createdBy, false), true, release, nil
	}
	return st, false, unlock, nil
}

func (r *stepRun) lookup(ctx context.Context, st State, key cache.Key) (State, bool) {
	rec, ok, err := r.b.deps.Cache.Get(key)
	if err != nil || !ok {
		return st, false
	}
	l, err := r.b.deps.HoldLayer(ctx, rec.Layer, st.Top())
	if err != nil || l.DiffID != rec.DiffID {
		return st, false // gone, on another parent, or damaged: rebuild
	}
	st = st.withLayer(l)
	st.key, st.stamp = key, rec.Created
	r.event(Event{Kind: StepCached, Digest: rec.DiffID.String()})
	return st, true
}

// recordKey makes key st's, the step's result.
func (r *stepRun) recordKey(st State, key cache.Key) State {
	st.key, st.stamp = key, time.Now().UTC()
	return st
}

// put stores the step's stored layer c in the cache under key.
func (r *stepRun) put(key cache.Key, c snapshot.Committed, created time.Time) {
	if r.b.deps.Cache == nil || c.Empty {
		return
	}
	// A failure to record costs a rebuild next time, nothing more.
	_ = r.b.deps.Cache.Put(key, cache.Record{Layer: c.Layer.ID, DiffID: c.Layer.DiffID, Size: c.Layer.Size, Created: created})
}

// commitOpts are the options of every commit the engine makes: BuildKit
// commits a layer for every RUN, COPY and WORKDIR, an empty one when
// nothing changed.
func (r *stepRun) commitOpts() []snapshot.CommitOpt {
	return slices.Concat(r.b.deps.Commit, []snapshot.CommitOpt{snapshot.KeepEmpty()})
}
