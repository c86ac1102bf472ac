package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	goruntime "runtime"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
)

// Request is one build.
type Request struct {
	Graph   *dockerfile.Graph
	Context ContextSource // nil when the build has no context (a Dockerfile from stdin)
	// Secrets are the --secret values by id, for RUN --mount=type=secret.
	Secrets map[string][]byte
	// Parallel bounds how many independent stages run at once; <= 0 means
	// the number of CPUs.
	Parallel int
	// BuildID names the build's snapshots; a random one when empty.
	BuildID  string
	Progress Progress
	// NoCache rebuilds every step (docker build --no-cache); the results
	// are still recorded. NoCacheFilter does so for the named stages only.
	NoCache       bool
	NoCacheFilter []string
	// Limits cap every RUN step's memory and processes (not part of the
	// cache key: a step that succeeds under a limit makes the same layer).
	Limits runtime.Limits
	// Network is the build's --network ("" or "default": none given); a
	// RUN's own --network wins over it. DefaultNetwork is what a RUN gets
	// when neither names a mode, and DefaultNetworkWarning is said once
	// when such a RUN runs (a fallback to the host's network).
	Network               string
	DefaultNetwork        runtime.Network
	DefaultNetworkWarning string
}

// Deps are what the engine runs steps with.
type Deps struct {
	Snaps snapshot.Snapshotter
	// Commit are the options of every Commit (the build's lease).
	Commit []snapshot.CommitOpt
	Runner Runner
	Images Images
	// CacheDir is where RUN --mount=type=cache directories persist.
	CacheDir string
	// TempDir holds a build's scratch files (heredoc scripts, fetched
	// URLs); empty means the system's.
	TempDir string
	// Cache is the build cache; nil builds every step and records nothing.
	Cache Cache
	// HoldLayer makes sure a cached layer is still in the store, on
	// parent (the state it is to extend: a key's record may have been
	// replaced by a concurrent build's equal step), and keeps it from
	// garbage collection until the build ends.
	HoldLayer func(ctx context.Context, id, parent string) (image.Layer, error)
}

// Result is a finished build: the target stage's final state.
type Result struct {
	Target *dockerfile.Stage
	State  State
}

// StepError is a step that failed: a RUN that exited non-zero, or an
// instruction that could not be carried out.
type StepError struct {
	Location dockerfile.Location
	Text     string // the instruction as written
	ExitCode int    // a RUN's exit code; 0 when the step failed otherwise
	Err      error  // the cause, when not an exit code
}

func (e *StepError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Location, e.Text, e.Err)
	}
	return fmt.Sprintf("%s: %s: exit code %d", e.Location, e.Text, e.ExitCode)
}

func (e *StepError) Unwrap() error { return e.Err }

// Solve builds the target stage of req.Graph and the stages it needs:
// first it plans every needed stage (bases resolved, ONBUILD triggers
// added, every instruction expanded and checked), so that errors knowable
// without running anything are reported before any step runs; then it runs
// the stages, each as soon as the stages it depends on are done, at most
// req.Parallel at a time. When one fails the others are cancelled; nothing
// of a failed step is left (its snapshot is removed; committed layers of
// finished steps stay for the store's garbage collection rules).
func Solve(ctx context.Context, req Request, deps Deps) (*Result, error) {
	if req.Progress == nil {
		req.Progress = DiscardProgress{}
	}
	if req.BuildID == "" {
		req.BuildID = randomID()
	}
	for _, w := range req.Graph.Warnings {
		req.Progress.Event(Event{Kind: Warning, Text: w})
	}
	plans, err := plan(ctx, req, deps)
	if err != nil {
		return nil, err
	}
	parallel := req.Parallel
	if parallel <= 0 {
		parallel = goruntime.NumCPU()
	}
	b := &build{req: req, deps: deps, plans: plans, results: map[*dockerfile.Stage]*stageResult{}, sem: make(chan struct{}, parallel)}
	for _, p := range plans {
		b.results[p.stage] = &stageResult{done: make(chan struct{})}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range plans {
		g.Go(func() error { return b.runStage(gctx, p) })
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	target := req.Graph.Target
	return &Result{Target: target, State: b.results[target].state}, nil
}

// build is one Solve's shared state.
type build struct {
	req     Request
	deps    Deps
	plans   []*stagePlan
	results map[*dockerfile.Stage]*stageResult
	sem     chan struct{}
	warned  sync.Once // DefaultNetworkWarning
}

// stageResult is a stage's outcome, set once when done is closed.
type stageResult struct {
	done  chan struct{}
	state State
	err   error
	once  sync.Once
}

func (r *stageResult) set(st State, err error) {
	r.once.Do(func() {
		r.state, r.err = st, err
		close(r.done)
	})
}

// wait returns the finished state of stage s.
func (b *build) wait(ctx context.Context, s *dockerfile.Stage) (State, error) {
	r := b.results[s]
	if r == nil {
		return State{}, fmt.Errorf("stage %s was not planned", s.DisplayName())
	}
	select {
	case <-r.done:
		return r.state, r.err
	case <-ctx.Done():
		return State{}, ctx.Err()
	}
}

// runStage waits for p's dependencies, then runs its steps.
func (b *build) runStage(ctx context.Context, p *stagePlan) (err error) {
	res := b.results[p.stage]
	defer func() {
		if err != nil {
			res.set(State{}, err)
		}
	}()
	for _, d := range p.stage.Deps() {
		if _, err := b.wait(ctx, d); err != nil {
			// The dependency's own error: whichever stage reports first,
			// the build fails with the cause.
			return err
		}
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.sem }()
	st, err := b.execute(ctx, p)
	if err != nil {
		return err
	}
	res.set(st, nil)
	return nil
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}
