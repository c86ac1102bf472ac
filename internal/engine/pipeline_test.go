package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/snapshot"
	"github.com/stepexec/stepexec/snapshot/native"
)

// asyncSnaps is the native store as an AsyncCommitter whose layers are
// "stored" only when the test says: a commit whose key ends in a key of
// hold waits for that channel; one in fail then fails.
type asyncSnaps struct {
	*native.Store
	mu      sync.Mutex
	hold    map[string]chan struct{}
	fail    map[string]error
	waited  []string // keys, in the order their storing finished
	started []string // keys committed
}

func (a *asyncSnaps) CommitAsync(ctx context.Context, key string, opts ...snapshot.CommitOpt) (snapshot.Committed, func() (snapshot.Committed, error), error) {
	c, err := a.Store.Commit(ctx, key, opts...)
	if err != nil {
		return c, nil, err
	}
	a.mu.Lock()
	a.started = append(a.started, key)
	var hold chan struct{}
	var fail error
	for suffix, ch := range a.hold {
		if strings.HasSuffix(key, suffix) {
			hold = ch
		}
	}
	for suffix, err := range a.fail {
		if strings.HasSuffix(key, suffix) {
			fail = err
		}
	}
	a.mu.Unlock()
	return c, func() (snapshot.Committed, error) {
		if hold != nil {
			<-hold
		}
		a.mu.Lock()
		a.waited = append(a.waited, key)
		a.mu.Unlock()
		return c, fail
	}, nil
}

// TestLayerStoredWhileNextStepRuns: the next RUN runs while the previous
// layer is being stored, sees its files, and its own commit comes after;
// the cache entry of a layer is written once it is stored.
func TestLayerStoredWhileNextStepRuns(t *testing.T) {
	tb := newTestBuild(t)
	tb.cache = &fakeCache{recs: map[cache.Key]cache.Record{}}
	release := make(chan struct{})
	tb.async = &asyncSnaps{Store: tb.snaps, hold: map[string]chan struct{}{"-0-2": release}}
	ran := make(chan struct{})
	tb.runner.onRun = func(n int) {
		if n == 2 { // the second RUN runs while the first layer is held
			if got := len(tb.cache.recs); got != 0 {
				t.Errorf("%d cache entries before the first layer was stored", got)
			}
			close(ran)
			close(release)
		}
	}
	res := tb.mustSolve("FROM alpine\nRUN write /a a\nRUN write /b b\n", dockerfile.ParseOptions{})
	select {
	case <-ran:
	default:
		t.Fatal("the second RUN did not run")
	}
	if got := tb.file(res, "a") + tb.file(res, "b"); got != "ab" {
		t.Errorf("files %q", got)
	}
	if len(tb.cache.recs) != 2 {
		t.Errorf("%d cache entries, want 2", len(tb.cache.recs))
	}
	if w := tb.async.waited; len(w) != 2 || !strings.HasSuffix(w[0], "-0-2") {
		t.Errorf("layers stored in the order %v", w)
	}
}

// TestLayerStoreFailureFailsItsStep: a layer that fails to be stored fails
// its own step (line 2), though the error comes while line 3 runs; the
// next layer is not committed on it.
func TestLayerStoreFailureFailsItsStep(t *testing.T) {
	tb := newTestBuild(t)
	tb.async = &asyncSnaps{Store: tb.snaps, fail: map[string]error{"-0-2": errors.New("disk on fire")}}
	_, err := tb.solve(context.Background(), "FROM alpine\nRUN write /a a\nRUN write /b b\n", dockerfile.ParseOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Fatalf("error %v, want the storing failure at line 2", err)
	}
	if len(tb.async.started) != 1 {
		t.Errorf("commits %v: the second layer was committed on the failed one", tb.async.started)
	}
	if live := tb.liveKeys(); len(live) > 0 {
		t.Errorf("snapshots left: %v", live)
	}
}
