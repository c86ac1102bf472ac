package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/snapshot"
)

// stepRun is one step being executed: what its op needs besides the state.
type stepRun struct {
	b      *build
	p      *stagePlan
	step   dockerfile.Step
	vertex Vertex
	// prev is the previous step's layer, if it is being stored, and
	// pending this step's (pipeline.go).
	prev, pending *pendingCommit
}

func (r *stepRun) event(e Event) {
	e.Vertex = r.vertex
	r.b.req.Progress.Event(e)
}

// key names a snapshot of this step; suffix tells several apart.
func (r *stepRun) key(suffix string) string {
	k := r.b.req.BuildID + "-" + strconv.Itoa(r.p.stage.Index) + "-" + strconv.Itoa(r.vertex.Step)
	if suffix != "" {
		k += "-" + suffix
	}
	return k
}

// execute runs a planned stage: its FROM, then each step in order.
func (b *build) execute(ctx context.Context, p *stagePlan) (State, error) {
	total := len(p.steps) + 1
	vertex := func(n int) Vertex {
		return Vertex{Stage: p.stage.Index, StageName: p.stage.DisplayName(), Step: n, Steps: total}
	}
	st, err := b.from(ctx, p, vertex(1))
	if err != nil {
		return State{}, err
	}
	var pend *pendingCommit // the last layer made, while it is stored
	var pendStep dockerfile.Step
	for i, step := range p.steps {
		if err := ctx.Err(); err != nil {
			_ = pend.finish()
			return State{}, err
		}
		r := &stepRun{b: b, p: p, step: step, vertex: vertex(i + 2), prev: pend}
		start := time.Now()
		text := step.Text
		if step.OnBuild {
			text = "ONBUILD " + text
		}
		r.event(Event{Kind: StepStarted, Text: text})
		st, err = r.exec(ctx, st)
		if err != nil {
			// The earlier layer's failure comes first: this step's
			// may be its consequence.
			perr := pend.finish()
			_ = r.pending.finish()
			switch {
			case perr != nil:
				return State{}, stepErr(pendStep, perr)
			case ctx.Err() != nil:
				return State{}, ctx.Err()
			}
			return State{}, stepErr(step, err)
		}
		r.event(Event{Kind: StepDone, Duration: time.Since(start)})
		if r.pending != nil { // its commit finished pend first
			pend, pendStep = r.pending, step
		}
	}
	if err := pend.finish(); err != nil {
		return State{}, stepErr(pendStep, err)
	}
	return st, nil
}

// from starts a stage: the base stage's result, an image, or scratch.
func (b *build) from(ctx context.Context, p *stagePlan, v Vertex) (State, error) {
	start := time.Now()
	ev := func(e Event) { e.Vertex = v; b.req.Progress.Event(e) }
	text := "FROM " + p.stage.BaseName
	if p.stage.Name != "" {
		text += " AS " + p.stage.Name
	}
	ev(Event{Kind: StepStarted, Text: text})
	finals := map[*dockerfile.Stage]State{}
	switch {
	case p.stage.Base != nil:
		base, err := b.wait(ctx, p.stage.Base)
		if err != nil {
			return State{}, err
		}
		finals[p.stage.Base] = base
		ev(Event{Kind: BaseResolved, Name: "stage " + p.stage.Base.DisplayName()})
	case p.base != nil:
		name := p.base.Name
		if name == "" {
			name = p.stage.BaseName
		}
		ev(Event{Kind: BaseResolved, Name: name, Digest: "sha256:" + p.base.ID})
	default:
		ev(Event{Kind: BaseResolved, Name: "scratch"})
	}
	st := p.startState(finals)
	ev(Event{Kind: StepDone, Duration: time.Since(start)})
	return st, nil
}

// exec expands the step with the state's variables and runs its op.
func (r *stepRun) exec(ctx context.Context, st State) (State, error) {
	cmd, err := r.b.req.Graph.Expander().Expand(r.step.Command, st.RunEnv())
	if err != nil {
		return st, err
	}
	switch c := cmd.(type) {
	case *dockerfile.Run:
		return r.run(ctx, st, c)
	case *dockerfile.Copy:
		return r.copy(ctx, st, c)
	case *dockerfile.Workdir:
		st, err = applyConfig(r.b.req, st, r.step, c)
		if err != nil {
			return st, err
		}
		return r.workdir(ctx, st)
	}
	return applyConfig(r.b.req, st, r.step, cmd)
}

// forStep prepares the snapshot a RUN step runs on.
var forStep = []snapshot.PrepareOpt{snapshot.ForStep()}

// inSnapshot prepares a writable snapshot on st's top layer (with the
// options prepare), lets change work in it and commits it under the
// build's commit options; when change fails the snapshot is removed. It
// returns st with the new layer (if the snapshot changed anything).
// The result is recorded in the build cache under ck.
func (r *stepRun) inSnapshot(ctx context.Context, st State, ck cache.Key, prepare []snapshot.PrepareOpt, change func(snap *snapshot.Snapshot) error) (State, snapshot.Committed, error) {
	snaps := r.b.deps.Snaps
	key := r.key("")
	snap, err := snaps.Prepare(ctx, key, st.Top(), prepare...)
	if err != nil {
		return st, snapshot.Committed{}, err
	}
	if err := change(snap); err != nil {
		if rerr := snaps.Remove(context.WithoutCancel(ctx), key); rerr != nil {
			err = fmt.Errorf("%w (and removing its snapshot: %v)", err, rerr)
		}
		return st, snapshot.Committed{}, err
	}
	// This layer goes on the previous one, which must be stored first.
	if err := r.prev.finish(); err != nil {
		_ = snaps.Remove(context.WithoutCancel(ctx), key)
		return st, snapshot.Committed{}, err // the loop reports the previous step's error
	}
	start := time.Now()
	c, wait, err := r.commit(ctx, key)
	if err != nil {
		return st, snapshot.Committed{}, err
	}
	r.event(Event{Kind: LayerDiffed, Files: c.Files, Bytes: c.Bytes, Empty: c.Empty, Duration: time.Since(start)})
	if !c.Empty {
		r.event(Event{Kind: LayerCommitted, Digest: c.Layer.DiffID.String()})
		st = st.withLayer(toImageLayer(c.Layer))
	}
	st = r.recordKey(st, ck)
	stamp := st.stamp
	r.pending = storing(wait, func(c snapshot.Committed) { r.put(ck, c, stamp) })
	return st, c, nil
}
